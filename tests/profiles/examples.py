"""Valid example requests of every ProfileService RPC, for tests/core/test_field_behavior.py.

The walker clears each REQUIRED field and sets each OUTPUT_ONLY field of these requests, so
each request sets what that needs: UpdateProfile's mask names `display_name` (a REQUIRED field
is only required when the mask names it), CreateProfile's presence has followers beside its
handle (a presence with neither is no presence, not a missing handle), and no example sets a
username, so creating it again never collides.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.field_behavior_support import ExampleContext, Examples

SERVICE = "/socialhub.v1.ProfileService/"


def _profile(display_name: str) -> profile_pb2.Profile:
    return profile_pb2.Profile(
        display_name=display_name,
        zone="North",
        # Not a small number: an OUTPUT_ONLY total the walker sets must differ from the real one.
        x=profile_pb2.PlatformPresence(handle="example", followers=4242, active=True),
        instagram=profile_pb2.PlatformPresence(handle="example.ig", followers=17),
    )


PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")


def _everywhere(display_name: str, name: str = "") -> profile_pb2.Profile:
    profile = profile_pb2.Profile(name=name, display_name=display_name)
    for index, platform in enumerate(PLATFORMS):
        presence = profile_pb2.PlatformPresence(handle=f"example.{platform}", followers=index + 1)
        getattr(profile, platform).CopyFrom(presence)
    return profile


def examples(context: ExampleContext) -> Examples:
    profiles = ProfileServiceStub(context.channel)
    kept = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=_profile("Kept")))
    doomed = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=_profile("Doomed")))
    batch_doomed = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=_profile("Batch Doomed"))
    )
    most_followed = profile_pb2.ProfileOrder(
        field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS,
        platform=profile_pb2.PLATFORM_X,
        descending=True,
    )
    return {
        SERVICE + "CreateProfile": [
            profile_pb2.CreateProfileRequest(profile=_profile("Created")),
            # Every platform present, so each presence's REQUIRED handle is walked.
            profile_pb2.CreateProfileRequest(profile=_everywhere("Created Everywhere")),
        ],
        SERVICE + "GetProfile": profile_pb2.GetProfileRequest(name=kept.name),
        SERVICE + "BatchGetProfiles": profile_pb2.BatchGetProfilesRequest(names=[kept.name]),
        SERVICE + "UpdateProfile": [
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=kept.name, display_name="Renamed", bio="New bio"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name", "bio"]),
            ),
            profile_pb2.UpdateProfileRequest(
                profile=_everywhere("Renamed Everywhere", name=kept.name),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name", *PLATFORMS]),
            ),
        ],
        SERVICE + "DeleteProfile": profile_pb2.DeleteProfileRequest(name=doomed.name),
        # allow_missing: accepted again after the profile is gone.
        SERVICE + "BatchDeleteProfiles": profile_pb2.BatchDeleteProfilesRequest(
            names=[batch_doomed.name], allow_missing=True
        ),
        SERVICE + "ListProfiles": [
            profile_pb2.ListProfilesRequest(page_size=5),
            profile_pb2.ListProfilesRequest(
                page_size=5,
                filter=profile_pb2.ProfileFilter(
                    zone="North",
                    platform_statuses=[
                        profile_pb2.PlatformStatusFilter(
                            platform=profile_pb2.PLATFORM_X, active=True
                        )
                    ],
                ),
                order=most_followed,
            ),
        ],
        SERVICE + "SearchProfiles": profile_pb2.SearchProfilesRequest(query="kept", page_size=5),
        SERVICE + "SummarizeProfiles": profile_pb2.SummarizeProfilesRequest(),
    }
