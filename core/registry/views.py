"""Pages for datasets and model versions: upload, report download, metrics, promotion and rollback."""

from django.contrib import messages
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import InvalidInput, NotFound, TrellisError
from core.products import model_tasks
from core.registry import selectors, services
from core.registry.describe import version_sentences
from core.registry.files import dataset_report_response
from core.registry.paths import PLATFORM_APP, model_apps
from core.registry.services import trying
from core.registry.services.promotion import rollback_target
from core.tenancy.roles import role_can
from core.web.views import member_required


@member_required()
def datasets_page(request):
    if request.method == "POST":
        if not role_can(request.role, "models.train"):
            return HttpResponseForbidden("Your role does not allow uploading datasets.")
        upload = request.FILES.get("file")
        try:
            if upload is None:
                raise InvalidInput("Choose a CSV or JSONL file.")
            dataset = services.dataset_upload(
                organisation=request.organisation,
                name=request.POST.get("name", ""),
                task=request.POST.get("task", "classification"),
                data=upload.read(),
                filename=upload.name,
            )
        except TrellisError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                f"{dataset.name} v{dataset.version}: {dataset.row_count} rows accepted, "
                f"{dataset.rejected_count} rejected.",
            )
        return redirect("datasets")
    return _datasets(request)


def _datasets(request, status: int = 200):
    context = {
        "datasets": selectors.dataset_list(organisation=request.organisation),
        "model_apps": [app for app in model_apps() if app != PLATFORM_APP],
        # the classifier tasks products declare (core.products): this form trains classification datasets
        "model_tasks": model_tasks("classifier"),
    }
    return render(request, "registry/datasets.html", context, status=status)


@member_required()
def dataset_report(request, dataset_id: int):
    dataset = selectors.dataset_get(organisation=request.organisation, dataset_id=dataset_id)
    if dataset is None:
        raise Http404
    return dataset_report_response(dataset)


@member_required("models.train")
@require_POST
def dataset_train(request, dataset_id: int):
    if selectors.dataset_get(organisation=request.organisation, dataset_id=dataset_id) is None:
        raise Http404
    preset = services.TRAINING_PRESETS.get(request.POST.get("method", "auto"))
    try:
        if preset is None:
            raise InvalidInput("Choose a training method from the list.")
        config, search, follow_up = preset
        job = services.model_train_start(
            organisation=request.organisation,
            dataset_id=dataset_id,
            app=request.POST.get("app", ""),
            task=request.POST.get("task", "").strip(),
            config=config,
            search=search,
            follow_up=follow_up,
            created_by=request.user,
        )
    except TrellisError as exc:  # answered with its status (400 for a bad product or task), nothing started
        messages.error(request, exc.message)
        return _datasets(request, status=exc.status)
    return redirect("job-detail", job_id=job.pk)


@member_required("models.train")
@require_POST
def job_fine_tune(request, job_id: int):
    """The fine-tune a finished fast model's job page offers: one more training job, started on request."""
    try:
        follow = services.model_fine_tune_start(
            organisation=request.organisation, job_id=job_id, created_by=request.user
        )
    except NotFound:
        raise Http404
    except TrellisError as exc:
        messages.error(request, exc.message)
        return redirect("job-detail", job_id=job_id)
    messages.success(
        request, "Fine-tuning started: it replaces the fast model only if it does better on held-out rows."
    )
    return redirect("job-detail", job_id=follow.pk)


@member_required()
def models_page(request):
    versions = list(selectors.model_list(organisation=request.organisation))
    for version in versions:  # which weights answer in this process (int8 only where it pays here)
        version.serving = services.serving_path(version=version)
    return render(request, "registry/models.html", {"versions": versions})


@member_required()
def model_detail(request, version_id: int):
    version = selectors.model_get(organisation=request.organisation, version_id=version_id)
    if version is None:
        raise Http404
    return _model_page(request, version)


@member_required("models.predict")
@require_POST
def model_try(request, version_id: int):
    """The model page's try box: one text, the prediction in words (metered as one prediction)."""
    version = selectors.model_get(organisation=request.organisation, version_id=version_id)
    if version is None:
        raise Http404
    text = request.POST.get("text", "")
    try:
        result = trying.model_try(organisation=request.organisation, version_id=version.pk, text=text)
    except TrellisError as exc:
        return _model_page(request, version, tried=text, try_error=exc.message, status=exc.status)
    return _model_page(request, version, tried=text, try_result=result)


def _model_page(request, version, *, status: int = 200, **extra):
    labels = version.metrics.get("labels", [])
    matrix = version.metrics.get("confusion", [])
    peak = max((max(row) for row in matrix), default=1) or 1
    rows = [(labels[i], [(n, f"{n / peak:.2f}") for n in row]) for i, row in enumerate(matrix)]
    context = {
        "version": version,
        "serving": services.serving_path(version=version),
        "matrix": rows,
        "labels": labels,
        "per_class": sorted(version.metrics.get("per_class", {}).items()),
        "can_promote": role_can(request.role, "models.promote"),
        # what a rollback would re-activate (the active version only; None: nothing earlier to go back to)
        "rollback_to": rollback_target(version) if version.status == "active" else None,
        "retrieval": [(k, v) for k, v in version.metrics.items() if k.startswith("recall@")],
        "sentences": version_sentences(version),
        "can_try": role_can(request.role, "models.predict"),
        "cannot_try": trying.model_can_try(version=version),
        **extra,
    }
    return render(request, "registry/model_detail.html", context, status=status)


@member_required("models.promote")
@require_POST
def model_action(request, version_id: int):
    version = selectors.model_get(organisation=request.organisation, version_id=version_id)
    if version is None:
        raise Http404
    action = request.POST.get("action")
    try:
        if action == "promote":
            services.model_promote(
                organisation=request.organisation, version_id=version_id, force=True, actor=request.user
            )
        elif action == "rollback":
            services.model_rollback(
                organisation=request.organisation, app=version.app, task=version.task, actor=request.user
            )
        elif action == "archive":
            services.model_archive(organisation=request.organisation, version_id=version_id)
        else:
            raise InvalidInput("Unknown action.")
    except TrellisError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Done: {action}.")
    return redirect("model-detail", version_id=version_id)
