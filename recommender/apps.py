from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"

    def ready(self) -> None:
        from core.products import register_product
        from core.registry.kinds import register_kind
        from recommender.kinds import RecommenderKind

        register_kind(RecommenderKind())  # the third kind, before the product that declares a task of it
        from recommender.product import PRODUCT

        register_product(PRODUCT)
