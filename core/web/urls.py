from django.urls import path

from core.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
    path("switch-organisation/", views.switch_organisation, name="switch-organisation"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("members/", views.members, name="members"),
    path("members/<int:member_id>/", views.member_change, name="member-change"),
    path(
        "members/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation-revoke"
    ),
    path("keys/", views.api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("usage/", views.usage, name="usage"),
    path("billing/", views.billing_page, name="billing"),
    path("jobs/", views.jobs_page, name="jobs"),
    path("jobs/status/", views.jobs_status, name="jobs-status"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/download/", views.job_download, name="job-download"),
]
