"""Valid example requests of every PublishingService RPC, for tests/core/test_field_behavior.py.

The accounts are connected on the session's platform fakes. The posts to delete, update and
cancel are scheduled an hour ahead, so no worker has sent them when the walker gets to them.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from tests.field_behavior_support import ExampleContext, Examples
from tests.publishing.support import connect, consent, in_future, new_business, post_request

SERVICE = "/socialhub.v1.PublishingService/"


def examples(context: ExampleContext) -> Examples:
    stub = PublishingServiceStub(context.channel)
    fakes = context.fakes
    business = new_business(stub, "Example Business")
    x = connect(stub, fakes, business, "x")
    linkedin = connect(stub, fakes, business, "linkedin")
    sent = stub.CreateBusinessPost(post_request(business, [x.name], "Example post"))
    later = stub.CreateBusinessPost(
        post_request(business, [linkedin.name], "Later", schedule_time=in_future(3600))
    )
    to_edit, to_cancel = (
        stub.CreateBusinessPost(
            post_request(business, [x.name], text, schedule_time=in_future(3600))
        )
        for text in ("To edit", "To cancel")
    )
    consents = []
    for _ in range(2):  # CompleteAccountConnection's variants each use a state of their own
        started = stub.StartAccountConnection(
            publishing_pb2.StartAccountConnectionRequest(
                parent=business, platform=profile_pb2.PLATFORM_X
            )
        )
        consents.append(consent(started.authorize_uri))
    fresh = fakes.x.add_account("Direct")
    return {
        SERVICE + "CreateBusiness": publishing_pb2.CreateBusinessRequest(
            business=publishing_pb2.Business(display_name="Another", time_zone="UTC")
        ),
        SERVICE + "GetBusiness": publishing_pb2.GetBusinessRequest(name=business),
        SERVICE + "ListBusinesses": publishing_pb2.ListBusinessesRequest(page_size=5),
        SERVICE + "UpdateBusiness": publishing_pb2.UpdateBusinessRequest(
            business=publishing_pb2.Business(name=business, display_name="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        SERVICE + "StartAccountConnection": publishing_pb2.StartAccountConnectionRequest(
            parent=business, platform=profile_pb2.PLATFORM_LINKEDIN
        ),
        SERVICE + "CompleteAccountConnection": [
            publishing_pb2.CompleteAccountConnectionRequest(
                parent=business, state=consent["state"], code=consent["code"]
            )
            for consent in consents
        ],
        SERVICE + "ConnectAccount": publishing_pb2.ConnectAccountRequest(
            parent=business,
            platform=profile_pb2.PLATFORM_X,
            access_token=fresh.access_token,
            refresh_token=fresh.refresh_token or "",
            scopes=["tweet.write"],
        ),
        SERVICE + "GetAccount": publishing_pb2.GetAccountRequest(name=x.name),
        SERVICE + "ListAccounts": publishing_pb2.ListAccountsRequest(parent=business),
        SERVICE + "UpdateAccount": publishing_pb2.UpdateAccountRequest(
            account=publishing_pb2.Account(
                name=x.name,
                posting_schedule=[publishing_pb2.PostingSlot(day_of_week=1, local_time="09:00")],
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["posting_schedule"]),
        ),
        SERVICE + "DisconnectAccount": publishing_pb2.DisconnectAccountRequest(name=linkedin.name),
        SERVICE + "CreateBusinessPost": post_request(business, [x.name], "Another post"),
        SERVICE + "GetBusinessPost": publishing_pb2.GetBusinessPostRequest(name=sent.name),
        SERVICE + "ListBusinessPosts": publishing_pb2.ListBusinessPostsRequest(
            parent=business, filter='state = "PUBLISHED"'
        ),
        SERVICE + "UpdateBusinessPost": publishing_pb2.UpdateBusinessPostRequest(
            business_post=publishing_pb2.BusinessPost(
                name=to_edit.name,
                text="Edited",
                targets=[publishing_pb2.PublishTarget(account=x.name)],
                schedule_local_time="2030-06-03T09:30:00",
                time_zone="Europe/Paris",
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["text", "targets", "schedule_local_time", "time_zone"]
            ),
        ),
        SERVICE + "CancelBusinessPost": publishing_pb2.CancelBusinessPostRequest(
            name=to_cancel.name
        ),
        SERVICE + "DeleteBusinessPost": publishing_pb2.DeleteBusinessPostRequest(name=later.name),
        SERVICE + "ListPublishAttempts": publishing_pb2.ListPublishAttemptsRequest(
            parent=sent.name
        ),
        SERVICE + "WatchBusinessPost": publishing_pb2.WatchBusinessPostRequest(name=sent.name),
    }
