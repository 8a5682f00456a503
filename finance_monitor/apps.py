from django.apps import AppConfig


class FinanceMonitorConfig(AppConfig):
    name = "finance_monitor"
    verbose_name = "Finance monitor"

    def ready(self) -> None:
        from core.products import register_product
        from finance_monitor import tasks  # noqa: F401  (registers the Celery tasks)
        from finance_monitor.product import PRODUCT

        register_product(PRODUCT)
