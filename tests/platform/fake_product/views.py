from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import APIView

from core.web.views import member_required


@member_required("fake.use")
def index(request):
    return render(request, "base.html")  # the platform's layout, navigation included


class PingView(APIView):
    permissions = {"GET": "fake.use"}

    def get(self, request):
        return Response({"organisation": request.organisation.pk, "pong": True})
