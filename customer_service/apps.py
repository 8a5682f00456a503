from django.apps import AppConfig


class CustomerServiceConfig(AppConfig):
    name = "customer_service"
    verbose_name = "Customer service"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter
        from core.products import register_product
        from core.registry.rows import register_row_source
        from customer_service import services
        from customer_service.models import AnswerTemplate, Article, BotSettings
        from customer_service.product import PRODUCT
        from customer_service.services import state

        def articles(organisation) -> int:
            return Article.objects.for_org(organisation).count()

        register_stock_counter(
            Meter.STORED_RECORDS, "knowledge-base articles", articles
        )  # meters: issue 9, item 4
        register_product(PRODUCT)
        register_row_source(services.UNCLASSIFIED_MESSAGES)
        for model in (BotSettings, AnswerTemplate):  # what each chat message reads, cached (``state``)
            uid = f"customer_service.state.{model.__name__}"
            post_save.connect(state.changed, sender=model, weak=False, dispatch_uid=f"{uid}.save")
            post_delete.connect(state.changed, sender=model, weak=False, dispatch_uid=f"{uid}.delete")
