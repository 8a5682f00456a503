from channels.generic.websocket import JsonWebsocketConsumer
from django.urls import path


class HelloConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        self.accept()
        self.send_json({"type": "fake.hello"})


websocket_urlpatterns = [path("ws/fake/", HelloConsumer.as_asgi())]
