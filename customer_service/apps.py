from django.apps import AppConfig


class CustomerServiceConfig(AppConfig):
    name = "customer_service"
