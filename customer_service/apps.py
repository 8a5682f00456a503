from django.apps import AppConfig


class CustomerServiceConfig(AppConfig):
    name = "customer_service"
    verbose_name = "Customer service"

    def ready(self) -> None:
        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter
        from customer_service.models import Article

        def articles(organisation) -> int:
            return Article.objects.for_org(organisation).count()

        register_stock_counter(Meter.STORED_RECORDS, "knowledge-base articles", articles)

        from core.web.demo import register_demo_seeder
        from customer_service import demo

        register_demo_seeder("customer service", demo.seed)
