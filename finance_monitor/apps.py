from django.apps import AppConfig


class FinanceMonitorConfig(AppConfig):
    name = "finance_monitor"
