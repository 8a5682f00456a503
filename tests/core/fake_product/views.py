from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import APIView

from core.billing import services as billing
from core.web.views import member_required


@member_required("fake.use")
def index(request):
    return render(request, "base.html")  # the platform's layout, navigation included


class PingView(APIView):
    permissions = {"GET": "fake.use"}

    def get(self, request):
        return Response({"organisation": request.organisation.pk, "pong": True})


class MeteredPingView(APIView):
    """One ping, metered on the product's own meter through ``core.billing.metered``."""

    permissions = {"POST": "fake.use"}

    def post(self, request):
        pong = billing.metered(
            lambda: {"pong": True},
            organisation=request.organisation,
            meter="fake_pings",
            idempotency_key=request.headers.get("X-Ping-Id"),
            metadata={"app": "fake_product"},
        )
        return Response(pong)
