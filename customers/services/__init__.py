"""Customer services: every write about customers goes through one of these."""

from .consent import consent_record
from .conversations import (
    conversation_message_add,
    conversation_message_receive,
    conversation_reply,
    conversation_update,
)
from .identities import blocked_identifier_add, identity_add, identity_remove
from .merge import MAX_MERGE, customer_merge, merge_survivor
from .privacy import customer_erase, customer_export, customer_export_data
from .profile import customer_create, customer_update, profile_clean
from .resolution import ResolveRequest, customer_resolve, drop_blocked, identities_resolve
from .segments import segment_count_refresh
from .stats import preferred_channel_infer
from .touchpoints import IngestResult, touchpoint_record, touchpoints_ingest

__all__ = [
    "MAX_MERGE",
    "IngestResult",
    "ResolveRequest",
    "blocked_identifier_add",
    "consent_record",
    "conversation_message_add",
    "conversation_message_receive",
    "conversation_reply",
    "conversation_update",
    "customer_create",
    "customer_erase",
    "customer_export",
    "customer_export_data",
    "customer_merge",
    "customer_resolve",
    "customer_update",
    "drop_blocked",
    "identities_resolve",
    "identity_add",
    "identity_remove",
    "merge_survivor",
    "preferred_channel_infer",
    "profile_clean",
    "segment_count_refresh",
    "touchpoint_record",
    "touchpoints_ingest",
]
