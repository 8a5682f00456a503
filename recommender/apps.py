from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"

    def ready(self) -> None:
        from core.products import DashboardCard, NavEntry, Product, register_product

        register_product(
            Product(
                name="recommender",
                display_name="Recommender",
                url_prefix="recommender",
                urls="recommender.urls",
                nav=(NavEntry("Recommender", "recommender:index"),),
                cards=(
                    DashboardCard("Recommender", "Personalised top-k recommendations.", "recommender:index"),
                ),
            )
        )
