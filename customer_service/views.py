"""Pages of the support chatbot: set-up (widget, thresholds, templates, articles), the live inbox, and the
embeddable widget script. Each view validates a form and calls one service."""

from pathlib import Path

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import TrellisError
from core.tenancy.roles import role_can
from core.web.views import member_required
from customer_service import forms, selectors, services

WIDGET_JS = Path(__file__).resolve().parent / "static" / "customer_service" / "widget.js"


def _fail(request, exc: TrellisError, form=None) -> None:
    if form is not None:
        form.add_error(
            exc.details.get("field") if exc.details.get("field") in form.fields else None, exc.message
        )
    else:
        messages.error(request, exc.message)


@member_required()
def index(request):
    organisation = request.organisation
    can_manage = role_can(request.role, "org.manage")
    bot = services.bot_settings_for(organisation=organisation)
    initial = {
        "bot_name": bot.bot_name,
        "greeting": bot.greeting,
        "handoff_message": bot.handoff_message,
        "intent_threshold": bot.intent_threshold,
        "retrieval_threshold": bot.retrieval_threshold,
        "allowed_origins": "\n".join(bot.allowed_origins),
    }
    settings_form = forms.SettingsForm(initial=initial)
    template_form, article_form = forms.TemplateForm(), forms.ArticleForm()
    if request.method == "POST":
        if not can_manage:
            return HttpResponse("Your role does not allow changing the chatbot.", status=403)
        which = request.POST.get("form")
        try:
            if which == "settings":
                settings_form = forms.SettingsForm(request.POST)
                if settings_form.is_valid():
                    data = dict(settings_form.cleaned_data)
                    data["allowed_origins"] = [o for o in data["allowed_origins"].split() if o.strip()]
                    services.bot_settings_update(organisation=organisation, **data)
                    messages.success(request, "Chatbot settings saved.")
                    return redirect("customer_service:index")
            elif which == "template":
                template_form = forms.TemplateForm(request.POST)
                if template_form.is_valid():
                    services.template_save(organisation=organisation, **template_form.cleaned_data)
                    messages.success(request, f"Answer for '{template_form.cleaned_data['intent']}' saved.")
                    return redirect("customer_service:index")
            elif which == "templates_file":
                upload = request.FILES.get("file")
                if upload is None:
                    messages.error(request, "Choose a CSV file with intent,answer columns.")
                    return redirect("customer_service:index")
                result = services.templates_import(organisation=organisation, data=upload.read())
                messages.success(request, f"{result['saved']} answers saved.")
                for row in result["rejected"][:10]:
                    messages.error(request, f"Line {row['line']}: {row['reason']}")
                return redirect("customer_service:index")
            elif which == "qa_file":
                upload = request.FILES.get("file")
                if upload is None or not role_can(request.role, "models.train"):
                    messages.error(request, "Choose a CSV file with question,answer columns.")
                    return redirect("customer_service:index")
                result = services.qa_import(
                    organisation=organisation, data=upload.read(), created_by=request.user
                )
                note = " A job is training the retrieval model on them." if result["job"] else ""
                messages.success(request, f"{result['articles']} questions and answers added.{note}")
                for row in result["rejected"][:10]:
                    messages.error(request, f"Line {row['line']}: {row['reason']}")
                return redirect("customer_service:index")
            elif which != "article":
                messages.error(request, "Unknown form.")
                return redirect("customer_service:index")
            else:
                article_form = forms.ArticleForm(request.POST)
                if article_form.is_valid():
                    services.article_save(organisation=organisation, **article_form.cleaned_data)
                    messages.success(
                        request, f"Article '{article_form.cleaned_data['title']}' added and indexed."
                    )
                    return redirect("customer_service:index")
        except TrellisError as exc:
            _fail(
                request,
                exc,
                {"settings": settings_form, "template": template_form, "article": article_form}.get(which),
            )
    script_url = request.build_absolute_uri(reverse("customer_service:widget-script"))
    version = selectors.intent_model(organisation=organisation)
    intents = version.labels if version is not None else []
    templates = list(selectors.template_list(organisation=organisation))
    covered = {t.intent for t in templates}
    return render(
        request,
        "customer_service/index.html",
        {
            "bot": bot,
            "can_manage": can_manage,
            "can_operate": role_can(request.role, "inbox.operate"),
            "settings_form": settings_form,
            "template_form": template_form,
            "article_form": article_form,
            "templates": templates,
            "articles": selectors.article_list(organisation=organisation),
            "model": version,
            "uncovered": [i for i in intents if i not in covered],
            "corrections": selectors.correction_count(organisation=organisation),
            "can_train": role_can(request.role, "models.train"),
            "snippet": f'<script src="{script_url}" data-key="{bot.widget_key}" async></script>',
        },
    )


@require_POST
@member_required("org.manage")
def template_delete(request, template_id: int):
    try:
        services.template_delete(organisation=request.organisation, template_id=template_id)
        messages.success(request, "Answer deleted.")
    except TrellisError as exc:
        _fail(request, exc)
    return redirect("customer_service:index")


@require_POST
@member_required("org.manage")
def article_delete(request, article_id: int):
    try:
        services.article_delete(organisation=request.organisation, article_id=article_id)
        messages.success(request, "Article deleted.")
    except TrellisError as exc:
        _fail(request, exc)
    return redirect("customer_service:index")


@require_POST
@member_required("models.train")
def retrain(request):
    try:
        job = services.retrain_with_corrections(organisation=request.organisation, created_by=request.user)
    except TrellisError as exc:
        _fail(request, exc)
        return redirect("customer_service:index")
    messages.success(
        request, "Training on the corrected data: the new model replaces the active one if it scores better."
    )
    return redirect("job-detail", job.pk)


@require_POST
@member_required("org.manage")
def rotate_key(request):
    services.widget_key_rotate(organisation=request.organisation)
    messages.success(
        request, "New widget key made: update the snippet on your site; the old key no longer works."
    )
    return redirect("customer_service:index")


@member_required()
def try_widget(request):
    """The widget on a Trellis page, to try the bot before embedding it."""
    bot = services.bot_settings_for(organisation=request.organisation)
    return render(request, "customer_service/try.html", {"bot": bot})


@member_required("inbox.operate")
def inbox(request):
    return render(request, "customer_service/inbox.html", {"api": "/api/customer-service"})


def widget_script(request):
    """The embeddable widget (public: it runs on the tenant's own site)."""
    response = HttpResponse(WIDGET_JS.read_bytes(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response
