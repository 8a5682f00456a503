from django.shortcuts import render

from core.errors import TrellisError
from core.registry.models import ModelVersion
from core.web.views import member_required
from recommender import selectors
from recommender.services import serving
from recommender.services.training import APP, TASK


@member_required()
def index(request):
    """The catalogue and behaviour at a glance, the models, and the explorer: ``?user=`` shows that user's
    latest events and their recommendations with why each item is there (a served, metered request)."""
    organisation = request.organisation
    user = (request.GET.get("user") or "").strip()[:200]
    context = {
        "stats": selectors.catalogue_stats(organisation=organisation),
        "versions": [
            (v, [v.metrics.get(key) for key in ("ndcg@10", "recall@10", "hr@10")])
            for v in ModelVersion.objects.for_org(organisation)
            .filter(app=APP, task=TASK)
            .order_by("-version")[:10]
        ],
        "explore_user": user,
    }
    if user:
        context["history"] = selectors.user_recent_events(organisation=organisation, user=user)
        try:
            context["answer"] = serving.recommendations_for_user(
                organisation=organisation, user=user, k=10, filters=serving.Filters()
            )
        except TrellisError as exc:
            context["error"] = exc.message
    return render(request, "recommender/index.html", context)
