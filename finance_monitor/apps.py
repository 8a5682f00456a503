from django.apps import AppConfig


class FinanceMonitorConfig(AppConfig):
    name = "finance_monitor"

    def ready(self) -> None:
        from core.products import DashboardCard, NavEntry, Product, register_product

        register_product(
            Product(
                name="finance_monitor",
                display_name="Finance monitor",
                url_prefix="finance-monitor",
                urls="finance_monitor.urls",
                nav=(NavEntry("Finance monitor", "finance_monitor:index"),),
                cards=(
                    DashboardCard(
                        "Finance monitor",
                        "Topic and sentiment monitoring with alerts.",
                        "finance_monitor:index",
                    ),
                ),
            )
        )
