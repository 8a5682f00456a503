from django.urls import path

from customer_service import api

urlpatterns = [
    path("settings/", api.SettingsView.as_view(), name="api-cs-settings"),
    path("settings/rotate-key/", api.RotateKeyView.as_view(), name="api-cs-rotate-key"),
    path("templates/", api.TemplateListView.as_view(), name="api-cs-templates"),
    path("templates/import", api.TemplateImportView.as_view(), name="api-cs-templates-import"),
    path("templates/<int:template_id>/", api.TemplateDetailView.as_view(), name="api-cs-template"),
    path("articles/", api.ArticleListView.as_view(), name="api-cs-articles"),
    path("qa/import", api.QaImportView.as_view(), name="api-cs-qa-import"),
    path("articles/<int:article_id>/", api.ArticleDetailView.as_view(), name="api-cs-article"),
    path("answer", api.AnswerView.as_view(), name="api-cs-answer"),
    path("conversations/", api.ConversationListView.as_view(), name="api-cs-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        api.ConversationDetailView.as_view(),
        name="api-cs-conversation",
    ),
    *[
        path(
            f"conversations/<int:conversation_id>/{action}/",
            api.ConversationActionView.as_view(verb=action),
            name=f"api-cs-{action}",
        )
        for action in ("take-over", "reply", "hand-back", "close")
    ],
    path("conversations/<int:conversation_id>/notes/", api.NoteListView.as_view(), name="api-cs-notes"),
    path("conversations/<int:conversation_id>/assign/", api.AssignView.as_view(), name="api-cs-assign"),
    path("conversations/<int:conversation_id>/seen/", api.SeenView.as_view(), name="api-cs-seen"),
    path("operators/", api.OperatorListView.as_view(), name="api-cs-operators"),
    path("saved-replies/", api.SavedReplyListView.as_view(), name="api-cs-saved-replies"),
    path("saved-replies/<int:reply_id>/", api.SavedReplyDetailView.as_view(), name="api-cs-saved-reply"),
    path("messages/<int:message_id>/correct/", api.CorrectView.as_view(), name="api-cs-correct"),
    path("corrections.csv", api.CorrectionsView.as_view(), name="api-cs-corrections"),
    path("retrain", api.RetrainView.as_view(), name="api-cs-retrain"),
    path("analytics", api.AnalyticsView.as_view(), name="api-cs-analytics"),
]
