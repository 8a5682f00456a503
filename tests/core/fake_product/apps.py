from django.apps import AppConfig


class FakeProductConfig(AppConfig):
    name = "tests.core.fake_product"
    label = "fake_product"

    def ready(self) -> None:
        from core.jobs.handlers import JobKind
        from core.products import (
            BeatEntry,
            DashboardCard,
            MeterSpec,
            ModelTask,
            NavEntry,
            Product,
            ProductPermission,
            register_product,
        )
        from core.registry.kinds import register_kind
        from core.tenancy.models import Role
        from tests.core.fake_product.kinds import TfidfKind

        register_kind(TfidfKind())  # its own model kind, before the product that declares a task of it

        register_product(
            Product(
                name="fake_product",
                display_name="Fake product",
                url_prefix="fake-product",
                urls="tests.core.fake_product.urls",
                api_urls="tests.core.fake_product.api_urls",
                websocket_routes="tests.core.fake_product.routing",
                nav=(NavEntry("Fake product", "fake_product:index", permission="fake.use"),),
                cards=(DashboardCard("Fake product", "Only in the tests.", "fake_product:index"),),
                permissions=(
                    ProductPermission("fake.use", roles=frozenset({Role.OWNER, Role.ADMIN}), scope="read"),
                ),
                role_duties={Role.OPERATOR: "the fake console"},
                beat=(BeatEntry("fake-product-tick", task="fake_product.tick", schedule=30.0),),
                job_kinds=(JobKind("fake.ping", queue="default", handler=_ping, metered=False),),
                model_tasks=(
                    ModelTask("fakeness", kind="classifier"),
                    ModelTask("keywords", kind="tfidf", on_activate=_activated),
                ),
                demo_seeder=lambda organisation, log: "nothing",
                meters=(
                    MeterSpec(
                        "fake_pings",
                        kind="flow",
                        unit="ping",
                        label="Fake pings",
                        limits={"trial": 3, "pro": 300, "enterprise": 3_000},
                    ),
                    MeterSpec(
                        "fake_widgets",
                        kind="stock",
                        unit="widget",
                        label="Fake widgets",
                        limits={"trial": 2, "pro": 20, "enterprise": 200},
                        counter=_widgets,
                    ),
                ),
            )
        )


activations: list[int] = []  # the keyword versions whose activation committed, in order (on_activate)


def _activated(*, organisation, version) -> None:
    activations.append(version.pk)


def _ping(job, reporter) -> dict:
    return {"pong": job.params.get("n", 0)}


def _widgets(organisation) -> int:
    """The fake stock meter counts the organisation's members."""
    from core.tenancy.models import Membership

    return Membership.objects.for_org(organisation).count()
