"""The Chorus exception tree and its rendering as RFC 9457 problem+json.

Every error a user can see has a stable ``code``; routes never raise ``HTTPException``.
A service fault (status 5xx) answers its class's ``public_detail``: the detail it was raised
with names what failed inside (a host, a port, a bucket, a path) and goes to the log only.

    ChorusError                      500 internal_error
    ├── ConfigurationError           (start-up only: one clear line, no traceback)
    ├── BadRequest                   400 bad_request
    │   └── DuplicateHeader          400 duplicate_header
    ├── AuthError                    401 unauthorized
    │   └── ConsentInvalid           401 consent_invalid
    ├── Forbidden                    403 forbidden
    │   ├── ConsentScopeInvalid      403 consent_scope
    │   └── MinorRefused             403 minor
    ├── NotFound                     404 not_found
    │   └── BlobNotFound             404 not_found
    ├── Conflict                     409 conflict
    │   ├── ContributionLimit        409 contribution_limit
    │   ├── IdempotencyKeyBusy       409 idempotency_key_busy (Retry-After)
    │   ├── DuplicateRecording       409 duplicate_recording
    │   └── AlreadyDecided           409 already_decided
    ├── UploadTimeout                408 upload_timeout
    ├── PayloadTooLarge              413 payload_too_large
    ├── UnsupportedAudio             415 unsupported_audio
    ├── RangeNotSatisfiable          416 range_not_satisfiable
    ├── InvalidInput                 422 invalid_input
    │   ├── InvalidMetadata          422 invalid_metadata
    │   ├── ExerciseNotEligible      422 exercise_not_eligible
    │   ├── UnstorableInput          422 unstorable_input
    │   ├── IdempotencyKeyReused     422 idempotency_key_reused
    │   └── InvalidAudio             422 invalid_audio
    │       └── NoSpeech             422 no_speech
    ├── ClientClosedRequest          499 client_closed_request (logged at INFO, never 5xx)
    ├── PresignedUrlUnsupported      501 presigned_unsupported
    ├── StorageFull                  507 storage_full (Retry-After)
    ├── SealBroken                   500 seal_broken
    └── Unavailable                  503 unavailable (Retry-After, as every 503)
        ├── StorageUnavailable       503 storage_unavailable (Retry-After: 30 s)
        ├── DatabaseUnavailable      503 database_unavailable
        │   └── DatabaseBusy         503 database_unavailable (a lock, a deadlock: a moment)
        └── DecoderUnavailable       503 decoder_unavailable

Database errors become these through one table, ``core.db_errors``.
"""

from __future__ import annotations

from typing import Any, ClassVar

# Seconds a client should wait before retrying a 503: every 503 says so (RFC 9110 §10.2.3).
RETRY_AFTER_S = 5


class ChorusError(Exception):
    """Base of every error Chorus raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    # Seconds a client should wait before trying again: sent as ``Retry-After`` when set.
    retry_after_s: ClassVar[int | None] = None
    # What a client reads of a service fault (5xx) in place of the detail, which stays in the log.
    public_detail: ClassVar[str] = "The service failed to handle this request."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    @property
    def client_detail(self) -> str:
        """The detail a client may read: its own request's fault, or the class's public text."""
        return self.detail if self.status < 500 else self.public_detail


class ConfigurationError(ChorusError):
    code = "configuration_error"
    title = "Invalid configuration"


class BadRequest(ChorusError):
    status = 400
    code = "bad_request"
    title = "Malformed request"


class DuplicateHeader(BadRequest):
    """A header that must appear once came twice: which one counts would be a guess."""

    code = "duplicate_header"
    title = "A header that must appear once was sent twice"


class AuthError(ChorusError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid credentials"


class ConsentInvalid(AuthError):
    code = "consent_invalid"
    title = "Missing or invalid consent token"


class Forbidden(ChorusError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this role"


class ConsentScopeInvalid(Forbidden):
    code = "consent_scope"
    title = "Consent does not cover speech research under an accepted version"


class MinorRefused(Forbidden):
    code = "minor"
    title = "Contributions from minors are not accepted"


class ConsentWithdrawn(Forbidden):
    code = "consent_withdrawn"
    title = "This consent token was withdrawn"


class NotFound(ChorusError):
    status = 404
    code = "not_found"
    title = "Not found"


class BlobNotFound(NotFound):
    title = "Object not found"


class Conflict(ChorusError):
    status = 409
    code = "conflict"
    title = "Conflict"


class ContributionLimit(Conflict):
    code = "contribution_limit"
    title = "Contribution limit for this exercise reached"


class IdempotencyKeyBusy(Conflict):
    code = "idempotency_key_busy"
    title = "An upload with this Idempotency-Key is still being handled"
    retry_after_s = 2


class DuplicateRecording(Conflict):
    code = "duplicate_recording"
    title = "This recording is already in the exercise's batch"


class AlreadyDecided(Conflict):
    code = "already_decided"
    title = "This report already has a decision"


class UploadTimeout(ChorusError):
    status = 408
    code = "upload_timeout"
    title = "The upload arrived too slowly"


class PayloadTooLarge(ChorusError):
    status = 413
    code = "payload_too_large"
    title = "Upload too large"


class UnsupportedAudio(ChorusError):
    status = 415
    code = "unsupported_audio"
    title = "Audio could not be decoded"


class RangeNotSatisfiable(ChorusError):
    status = 416
    code = "range_not_satisfiable"
    title = "The requested range is not in the file"


class InvalidInput(ChorusError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class InvalidMetadata(InvalidInput):
    code = "invalid_metadata"
    title = "Invalid metadata"


class ExerciseNotEligible(InvalidInput):
    code = "exercise_not_eligible"
    title = "Exercise is not eligible for collection"


class UnstorableInput(InvalidInput):
    """A value no supported database can store (a NUL, a lone surrogate, out of range)."""

    code = "unstorable_input"
    title = "A value cannot be stored"


class IdempotencyKeyReused(InvalidInput):
    """The learner sent this Idempotency-Key before with another request (exercise or audio)."""

    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for another upload"


class InvalidAudio(InvalidInput):
    code = "invalid_audio"
    title = "Audio outside the accepted bounds"


class NoSpeech(InvalidAudio):
    code = "no_speech"
    title = "No speech in the audio"


class PresignedUrlUnsupported(ChorusError):
    """A presigned URL was asked of a store that cannot make one (the file store)."""

    status = 501
    code = "presigned_unsupported"
    title = "Presigned URLs are not available"
    # Names nothing inside: said as it is, not replaced like other 5xx details.
    public_detail = "this store makes no presigned URLs: fetch the clip without ?presigned=true"


class StorageFull(ChorusError):
    """The blob store has no room left: retrying soon will not help until space is freed."""

    status = 507
    code = "storage_full"
    title = "Storage full"
    public_detail = "The service has no room to store this right now; nothing was stored."
    retry_after_s = 300


class ClientClosedRequest(ChorusError):
    """The client went away before its request was read: not the service's failure. The status
    (nginx's 499) is only ever counted and logged: there is no one left to send it to."""

    status = 499
    code = "client_closed_request"
    title = "The client closed the request"


class SealBroken(ChorusError):
    """A sealed value did not open under its bucket's key: altered, moved or another key's."""

    code = "seal_broken"
    title = "Sealed data could not be opened"


class Unavailable(ChorusError):
    status = 503
    code = "unavailable"
    title = "Service temporarily unavailable"
    public_detail = "The service cannot handle this request right now; retry after Retry-After."
    retry_after_s = RETRY_AFTER_S


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"
    title = "Storage temporarily unavailable"
    public_detail = "The service's storage does not answer; retry after Retry-After."
    retry_after_s = 30


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"
    title = "Database temporarily unavailable"
    public_detail = "The service's database does not answer; retry after Retry-After."


class DatabaseBusy(DatabaseUnavailable):
    """Another transaction held what this one needed (a lock it waited too long for, a
    deadlock, a serialization failure, every pooled connection): this one was rolled back and
    may succeed at once when run again. Clients see its parent's ``database_unavailable``."""


class DecoderUnavailable(Unavailable):
    code = "decoder_unavailable"
    title = "Audio decoder temporarily unavailable"
    public_detail = "The audio decoder could not take this upload; retry after Retry-After."


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem document with Chorus's stable ``code`` member."""
    body: dict[str, Any] = {
        "type": f"https://chorus.invalid/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return body
