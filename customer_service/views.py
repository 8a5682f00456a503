"""Pages of the support chatbot: set-up (widget, thresholds, templates, articles), the live inbox, and the
embeddable widget script. Each view handles one operation: it validates its form and calls one service;
a form that fails validation is shown again, with its errors, on the set-up page."""

from pathlib import Path

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import TrellisError
from core.tenancy.roles import role_can
from core.web.views import member_required
from customer_service import forms, selectors, services
from customer_service.services import analytics, branding, onboarding, unanswered

WIDGET_JS = Path(__file__).resolve().parent / "static" / "customer_service" / "widget.js"


def _fail(request, exc: TrellisError, form=None) -> None:
    if form is not None:
        form.add_error(
            exc.details.get("field") if exc.details.get("field") in form.fields else None, exc.message
        )
    else:
        messages.error(request, exc.message)


def _setup_page(request, *, status: int = 200, tab: str = "", **bound):
    """The set-up page, with any bound form (``settings_form``, ``template_form``, ``article_form``) that
    failed validation shown with its errors in place of the blank one, on its tab (``tab``)."""
    organisation = request.organisation
    bot = services.bot_settings_for(organisation=organisation)
    initial = {
        "bot_name": bot.bot_name,
        "greeting": bot.greeting,
        "handoff_message": bot.handoff_message,
        "intent_threshold": bot.intent_threshold,
        "retrieval_threshold": bot.retrieval_threshold,
        "allowed_origins": "\n".join(bot.allowed_origins),
        "grounded_answers": bot.grounded_answers,
    }
    script_url = request.build_absolute_uri(reverse("customer_service:widget-script"))
    version = selectors.intent_model(organisation=organisation)
    intents = version.labels if version is not None else []
    conversing_initial = {
        "uncertain_mode": bot.uncertain_mode,
        "suggestion_floor": bot.suggestion_floor,
        "rephrase_message": bot.rephrase_message,
        "out_of_scope_check": bot.out_of_scope_check,
    }
    hours_initial: dict = {"office_hours_enabled": bot.office_hours_enabled, "timezone": bot.timezone}
    for row in services.office_hours_rows(bot=bot):
        hours_initial[f"start_{row['day']}"], hours_initial[f"end_{row['day']}"] = row["start"], row["end"]
    templates = list(selectors.template_list(organisation=organisation))
    covered = {t.intent for t in templates}
    checklist = selectors.onboarding_checklist(organisation=organisation)
    context = {
        "tab": tab,
        "checklist": checklist,
        "checklist_done": sum(step.done for step in checklist),
        "bot": bot,
        "can_manage": role_can(request.role, "org.manage"),
        "can_operate": role_can(request.role, "inbox.operate"),
        "settings_form": forms.SettingsForm(initial=initial),
        "template_form": forms.TemplateForm(initial={"intent": request.GET.get("intent", "")[:100]}),
        # the intent picker: the active model's intents, those without an answer first
        "intent_choices": [(i, False) for i in intents if i not in covered]
        + [(i, True) for i in intents if i in covered],
        "intent_suggestions": [] if intents else selectors.dataset_intents(organisation=organisation),
        "article_form": forms.ArticleForm(),
        "templates": templates,
        "articles": selectors.article_list(organisation=organisation),
        "model": version,
        "uncovered": [i for i in intents if i not in covered],
        "corrections": selectors.correction_count(organisation=organisation),
        "can_train": role_can(request.role, "models.train"),
        "snippet": f'<script src="{script_url}" data-key="{bot.widget_key}" async></script>',
        "conversing_form": forms.ConversingForm(initial=conversing_initial),
        "office_hours_form": forms.OfficeHoursForm(initial=hours_initial),
        "operating_points": selectors.operating_points(
            organisation=organisation, version=version, out_of_scope=bot.out_of_scope_check
        ),
        "intent_thresholds": [
            (intent, bot.intent_thresholds.get(intent), services.intent_threshold_for(bot=bot, intent=intent))
            for intent in intents
        ],
        "operators_online": services.operators_online(organisation=organisation),
        "within_hours": services.within_office_hours(bot=bot),
    }
    context.update(bound)
    hours_form = context["office_hours_form"]
    context["office_hours_days"] = [
        (name, hours_form[f"start_{day}"], hours_form[f"end_{day}"])
        for day, name in enumerate(services.WEEKDAYS)
    ]
    return render(request, "customer_service/index.html", context, status=status)


@require_GET
@member_required()
def index(request):
    return _setup_page(request)


def _setup_redirect(tab: str):
    """Back to the set-up page, on the tab (``setup_tabs.js``) of the form just sent."""
    return redirect(f"{reverse('customer_service:index')}#{tab}")


def _saved(request, message: str, *, tab: str):
    messages.success(request, message)
    return _setup_redirect(tab)


@require_POST
@member_required("org.manage")
def settings_save(request):
    form = forms.SettingsForm(request.POST)
    if form.is_valid():
        data = dict(form.cleaned_data)
        data["allowed_origins"] = [o for o in data["allowed_origins"].split() if o.strip()]
        try:
            services.bot_settings_update(organisation=request.organisation, **data)
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            return _saved(request, "Chatbot settings saved.", tab="widget")
    return _setup_page(request, tab="widget", settings_form=form)


@require_POST
@member_required("org.manage")
def conversing_save(request):
    """What the bot does when it is not sure: suggestions, asking to rephrase, or hand-off."""
    form = forms.ConversingForm(request.POST)
    if form.is_valid():
        try:
            services.bot_settings_update(organisation=request.organisation, **form.cleaned_data)
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            return _saved(request, "Saved: what the bot does when it is not sure.", tab="model")
    return _setup_page(request, tab="model", conversing_form=form, status=400)


@require_POST
@member_required("org.manage")
def threshold_pick(request):
    """The tenant picked an operating point from the table: it becomes the global intent threshold."""
    form = forms.ThresholdPickForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a threshold between 0 and 1.")
        return _setup_redirect("model")
    threshold = form.cleaned_data["threshold"]
    services.bot_settings_update(organisation=request.organisation, intent_threshold=threshold)
    return _saved(
        request, f"The bot now answers from a template at {threshold:.2f} confidence or more.", tab="model"
    )


@require_POST
@member_required("org.manage")
def intent_thresholds_save(request):
    """Per-intent thresholds: a field ``threshold-<intent>`` per intent (empty: the global threshold)."""
    organisation = request.organisation
    labels = selectors.intent_labels(organisation=organisation)
    thresholds: dict[str, object] = {}
    for intent in labels:
        raw = request.POST.get(f"threshold-{intent}", "").strip()
        if raw:
            try:
                thresholds[intent] = float(raw)
            except ValueError:
                thresholds[intent] = raw  # refused by the service with the intent's name
    try:
        services.bot_settings_update(organisation=organisation, intent_thresholds=thresholds)
    except TrellisError as exc:
        _fail(request, exc)
        return _setup_page(request, tab="model", status=400)
    return _saved(
        request,
        f"{len(thresholds)} intent threshold{'s' if len(thresholds) != 1 else ''} saved.",
        tab="model",
    )


@require_POST
@member_required("org.manage")
def office_hours_save(request):
    form = forms.OfficeHoursForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.bot_settings_update(
                organisation=request.organisation,
                office_hours_enabled=data["office_hours_enabled"],
                timezone=data["timezone"],
                office_hours=data["office_hours"],
            )
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            return _saved(request, "Office hours saved.", tab="model")
    return _setup_page(request, tab="model", office_hours_form=form, status=400)


@require_POST
@member_required("org.manage")
def template_save(request):
    form = forms.TemplateForm(request.POST)
    if form.is_valid():
        try:
            services.template_save(organisation=request.organisation, **form.cleaned_data)
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            return _saved(request, f"Answer for '{form.cleaned_data['intent']}' saved.", tab="answers")
    return _setup_page(request, tab="answers", template_form=form)


def _report_rejections(request, rejected: list[dict]) -> None:
    for row in rejected[:10]:
        messages.error(request, f"Line {row['line']}: {row['reason']}")


@require_POST
@member_required("org.manage")
def templates_import(request):
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a CSV file with intent,answer columns.")
        return _setup_redirect("answers")
    try:
        result = services.templates_import(organisation=request.organisation, data=upload.read())
    except TrellisError as exc:
        _fail(request, exc)
        return _setup_page(request, tab="answers")
    _report_rejections(request, result["rejected"])
    return _saved(request, f"{result['saved']} answers saved.", tab="answers")


@require_POST
@member_required("org.manage")
def article_save(request):
    form = forms.ArticleForm(request.POST)
    if form.is_valid():
        try:
            services.article_save(organisation=request.organisation, **form.cleaned_data)
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            return _saved(
                request, f"Article '{form.cleaned_data['title']}' added and indexed.", tab="knowledge"
            )
    return _setup_page(request, tab="knowledge", article_form=form)


@require_POST
@member_required("org.manage")
def qa_import(request):
    upload = request.FILES.get("file")
    if upload is None or not role_can(request.role, "models.train"):
        messages.error(request, "Choose a CSV file with question,answer columns.")
        return _setup_redirect("knowledge")
    try:
        result = services.qa_import(
            organisation=request.organisation, data=upload.read(), created_by=request.user
        )
    except TrellisError as exc:
        _fail(request, exc)
        return _setup_page(request, tab="knowledge")
    _report_rejections(request, result["rejected"])
    note = " A job is training the retrieval model on them." if result["job"] else ""
    return _saved(request, f"{result['articles']} questions and answers added.{note}", tab="knowledge")


@require_POST
@member_required("org.manage")
def template_delete(request, template_id: int):
    try:
        services.template_delete(organisation=request.organisation, template_id=template_id)
        messages.success(request, "Answer deleted.")
    except TrellisError as exc:
        _fail(request, exc)
    return _setup_redirect("answers")


@require_POST
@member_required("org.manage")
def article_delete(request, article_id: int):
    try:
        services.article_delete(organisation=request.organisation, article_id=article_id)
        messages.success(request, "Article deleted.")
    except TrellisError as exc:
        _fail(request, exc)
    return _setup_redirect("knowledge")


@require_POST
@member_required("org.manage")
def sample_load(request):
    """The checklist's first step: the BANKING77 sample (an intent dataset and an answer per intent)."""
    try:
        loaded = onboarding.sample_data_load(organisation=request.organisation)
    except TrellisError as exc:  # over the plan's stored records, for one
        _fail(request, exc)
        return _setup_redirect("checklist")
    dataset = loaded.dataset
    if loaded.dataset_created or loaded.answers_added:
        messages.success(
            request,
            f"Sample data loaded: {dataset.row_count} questions in {len(dataset.labels)} intents, and "
            f"{loaded.answers_added} answers. Next: train the intent model.",
        )
    else:
        messages.info(request, "The sample data was already loaded; nothing was added.")
    return _setup_redirect("checklist")


@require_POST
@member_required("models.train")
def retrain(request):
    try:
        job = services.retrain_with_corrections(organisation=request.organisation, created_by=request.user)
    except TrellisError as exc:
        _fail(request, exc)
        return _setup_redirect("model")
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
    return _setup_redirect("widget")


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


def branding_initial(bot) -> dict:
    return {
        "colour": bot.brand_colour,
        "bot_name": bot.bot_name,
        "position": bot.widget_position,
        "welcome_text": bot.welcome_text,
    }


@require_http_methods(["GET", "POST"])
@member_required("org.manage")
def branding_save(request):
    """The widget's branding on its own page (the set-up page shows the same form, posting here)."""
    bot = services.bot_settings_for(organisation=request.organisation)
    if request.method != "POST":
        form = forms.BrandingForm(initial=branding_initial(bot))
        return render(request, "customer_service/branding.html", {"bot": bot, "branding_form": form})
    form = forms.BrandingForm(request.POST, request.FILES)
    if form.is_valid():
        data = dict(form.cleaned_data)
        upload = data.pop("avatar")
        # One byte over the cap is enough for the service to refuse it: a large file is never read in full.
        avatar = upload.read(branding.AVATAR_MAX_BYTES + 1) if upload else None
        try:
            branding.branding_update(organisation=request.organisation, avatar=avatar, **data)
        except TrellisError as exc:
            _fail(request, exc, form)
        else:
            messages.success(request, "Widget branding saved.")
            return redirect("customer_service:branding")
    context = {"bot": bot, "branding_form": form}
    return render(request, "customer_service/branding.html", context, status=400)


def _public(response: HttpResponse, max_age: int) -> HttpResponse:
    response["Cache-Control"] = f"public, max-age={max_age}"
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def widget_config(request, widget_key: str):
    """The widget's public branding (it runs on the tenant's site): these fields and nothing else."""
    try:
        config = branding.widget_config(widget_key=widget_key)
    except TrellisError as exc:
        body = {"error": {"code": exc.code, "message": exc.message, "details": {}}}
        return _public(JsonResponse(body, status=exc.status), 60)
    avatar = (
        reverse("customer_service:widget-avatar", args=[widget_key]) + f"?v={config.avatar_digest}"
        if config.avatar_digest
        else None
    )
    data = {
        "bot_name": config.bot_name,
        "colour": config.colour,
        "position": config.position,
        "welcome_text": config.welcome_text,
        "avatar": request.build_absolute_uri(avatar) if avatar else None,
    }
    return _public(JsonResponse(data), 60)


@require_GET
def widget_avatar(request, widget_key: str):
    """The avatar, re-encoded when it was saved; its address carries its digest, so it may be cached long."""
    try:
        data, content_type, digest = branding.widget_avatar(widget_key=widget_key)
    except TrellisError as exc:
        return _public(HttpResponse(exc.message, status=exc.status, content_type="text/plain"), 60)
    etag = f'"{digest}"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(data, content_type=content_type)
    response["ETag"] = etag
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return _public(response, 86400)


def _analytics_period(request):
    """The form and the period it asks for (None, with the form's error, when it is refused)."""
    form = forms.AnalyticsRangeForm(request.GET)
    form.is_valid()
    try:
        period = analytics.analytics_period(
            organisation=request.organisation,
            date_from=form.cleaned_data.get("from"),
            date_to=form.cleaned_data.get("to"),
        )
    except TrellisError as exc:
        _fail(request, exc, form)
        return form, None
    return form, period


@require_GET
@member_required()
def analytics_page(request):
    """Support analytics for a date range; the unanswered questions (visitors' texts) for operators and up."""
    organisation = request.organisation
    form, period = _analytics_period(request)
    if period is None:
        return render(request, "customer_service/analytics.html", {"form": form}, status=400)
    figures = analytics.support_analytics(organisation=organisation, period=period)
    may_read = role_can(request.role, "inbox.operate")
    context = {
        "form": form,
        "figures": figures,
        "chart": analytics.chart_data(figures=figures),
        "timings": [
            (label, timing, analytics.duration(timing["median_s"]), analytics.duration(timing["p90_s"]))
            for label, timing in (
                ("First response", figures["first_response"]),
                ("Resolution", figures["resolution"]),
            )
        ],
        "max_questions": unanswered.MAX_QUESTIONS,
        "clusters": unanswered.unanswered_clusters(organisation=organisation, period=period)
        if may_read
        else None,
        "can_manage": role_can(request.role, "org.manage"),
        "intents": selectors.intent_labels(organisation=organisation),
        "query": f"from={period.start.isoformat()}&to={period.end.isoformat()}",
    }
    return render(request, "customer_service/analytics.html", context)


@require_GET
@member_required()
def analytics_export(request):
    """The daily series of the analytics as CSV."""
    form, period = _analytics_period(request)
    if period is None:
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        message = next(iter(errors.values()))[0]
        return JsonResponse({"error": {"code": "invalid", "message": message, "details": errors}}, status=400)
    figures = analytics.support_analytics(organisation=request.organisation, period=period)
    response = HttpResponse(analytics.analytics_csv(figures=figures), content_type="text/csv; charset=utf-8")
    name = f"support-analytics-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
