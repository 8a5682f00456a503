from django.urls import path

from customer_service import views

app_name = "customer_service"
urlpatterns = [
    path("", views.index, name="index"),
    path("settings/", views.settings_save, name="settings-save"),
    path("settings/uncertain/", views.conversing_save, name="conversing-save"),
    path("settings/threshold/", views.threshold_pick, name="threshold-pick"),
    path("settings/intent-thresholds/", views.intent_thresholds_save, name="intent-thresholds-save"),
    path("settings/office-hours/", views.office_hours_save, name="office-hours-save"),
    path("settings/branding/", views.branding_save, name="branding"),
    path("widget/<str:widget_key>/config.json", views.widget_config, name="widget-config"),
    path("widget/<str:widget_key>/avatar", views.widget_avatar, name="widget-avatar"),
    path("templates/", views.template_save, name="template-save"),
    path("templates/import/", views.templates_import, name="templates-import"),
    path("articles/", views.article_save, name="article-save"),
    path("qa/import/", views.qa_import, name="qa-import"),
    path("inbox/", views.inbox, name="inbox"),
    path("analytics/", views.analytics_page, name="analytics"),
    path("analytics.csv", views.analytics_export, name="analytics-csv"),
    path("try/", views.try_widget, name="try"),
    path("widget.js", views.widget_script, name="widget-script"),
    path("rotate-key/", views.rotate_key, name="rotate-key"),
    path("retrain/", views.retrain, name="retrain"),
    path("sample/", views.sample_load, name="sample"),
    path("templates/<int:template_id>/delete/", views.template_delete, name="template-delete"),
    path("articles/<int:article_id>/delete/", views.article_delete, name="article-delete"),
]
