from django.shortcuts import render

from core.web.views import member_required


@member_required()
def index(request):
    return render(request, "finance_monitor/index.html")
