"""Live job progress for the signed-in member's organisation. Authenticates, joins, forwards."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.realtime import org_group
from core.tenancy.selectors import memberships_for_user


@database_sync_to_async
def _organisation_id(user, wanted):
    memberships = list(memberships_for_user(user=user))
    for membership in memberships:
        if membership.organisation_id == wanted:
            return wanted
    return memberships[0].organisation_id if memberships else None


class JobsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        session = self.scope.get("session") or {}
        org_id = await _organisation_id(user, session.get("org_id"))
        if org_id is None:
            await self.close(code=4403)
            return
        self.group = org_group(org_id, "jobs")
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def event_forward(self, message):
        await self.send_json({"type": message["event"], "data": message["data"]})
