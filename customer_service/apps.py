from django.apps import AppConfig


class CustomerServiceConfig(AppConfig):
    name = "customer_service"
    verbose_name = "Customer service"

    def ready(self) -> None:
        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter
        from core.products import register_product
        from core.registry.rows import register_row_source
        from customer_service import services
        from customer_service.models import Article
        from customer_service.product import PRODUCT

        def articles(organisation) -> int:
            return Article.objects.for_org(organisation).count()

        register_stock_counter(
            Meter.STORED_RECORDS, "knowledge-base articles", articles
        )  # meters: issue 9, item 4
        register_product(PRODUCT)
        register_row_source(services.UNCLASSIFIED_MESSAGES)
