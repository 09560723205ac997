"""The service's errors, in two small trees.

- :class:`LunaError`: what the API answers, one class per LUNA error code, each with its
  HTTP status and message template. The gateway's error middleware turns one into the LUNA
  error body ``{"error_code", "desc", "detail", "link"}``.
- :class:`ServiceError`: what goes wrong inside (a backing service away, a setting missing,
  a lost race). A driver's errors are translated into these once, where the driver is
  called (:func:`shared.messaging.broker.broker_errors`,
  :func:`shared.store.mongo.database_errors`), so
  the rest of the code catches these, never a driver's classes. The error middleware
  answers :class:`BackendUnavailable` with :class:`DependencyUnavailable` (503, code 2);
  anything else it does not know becomes error code 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

DOCS_LINK = "https://docs.visionlabs.ai/info/luna/troubleshooting/errors-description/code-{code}"


class LunaError(Exception):
    """Base of every error the API reports to clients."""

    error_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    desc: ClassVar[str] = "Internal server error"
    template: ClassVar[str] = "Internal server error"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.detail = self.template.format(**params) if params else self.template
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        """Response headers the error adds (``Retry-After``)."""
        return {}

    def body(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "desc": self.desc,
            "detail": self.detail,
            "link": DOCS_LINK.format(code=self.error_code),
        }


class InternalError(LunaError):
    pass


class DependencyUnavailable(LunaError):
    """A backing service (MongoDB, RabbitMQ, the queue worker) did not answer."""

    error_code = 2
    http_status = 503
    desc = "Service unavailable"
    template = "{reason}"


#: seconds an event subscriber refused for a cap is told to wait (``Retry-After``)
EVENTS_RETRY_AFTER = 5


class EventSubscribersLimit(DependencyUnavailable):
    template = (
        "The gateway serves at most {limit} event subscribers "
        "(LUNA_STREAMS_EVENTS_MAX_CONNECTIONS); retry later or on another gateway"
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(EVENTS_RETRY_AFTER)}


class FeedbackTimeout(LunaError):
    error_code = 3
    http_status = 504
    desc = "Gateway timeout"
    template = "No queue worker answered the feedback within {timeout} s; retry the request"


class FeedbackOverloaded(LunaError):
    """The feedback backlog cannot be answered within the gateway's timeout: said at once."""

    error_code = 4
    http_status = 503
    desc = "Service unavailable"
    template = (
        "The queue workers are {wait:.1f} s behind (more than the {timeout} s the gateway "
        "waits); retry after {retry_after} s"
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.params["retry_after"])}


class BadQueryParams(LunaError):
    error_code = 12012
    http_status = 400
    desc = "Bad/incomplete input data"
    template = "Bad query parameters '{name}'"


class BadLastEventId(BadQueryParams):
    """A ``Last-Event-ID`` (or ``last_event_id``) the events endpoint cannot resume from."""

    template = "Bad header 'Last-Event-ID': {reason}"


class PageNotFound(LunaError):
    error_code = 12013
    http_status = 404
    desc = "Resource not found"
    template = "Page not found"


class MethodNotAllowed(LunaError):
    error_code = 12021
    http_status = 405
    desc = "Method not allowed"
    template = "Method not allowed"


class BadInputJson(LunaError):
    error_code = 12022
    http_status = 400
    desc = "Bad/incomplete input data"
    template = "Failed to validate input json. Path: '{path}', message: '{message}'"


class BadContentType(LunaError):
    error_code = 12023
    http_status = 415
    desc = "Bad/incomplete input data"
    template = "Content type is unacceptable, allowed types: '{allowed}'"


class UnsupportedMediaType(LunaError):
    error_code = 12024
    http_status = 406
    desc = "Bad/incomplete input data"
    template = "Unsupported media type"


class BadJson(LunaError):
    error_code = 12027
    http_status = 400
    desc = "Bad/incomplete input data"
    template = "Failed to validate input json. Message: {message}"


class RequestTooLarge(LunaError):
    error_code = 12028
    http_status = 413
    desc = "Bad/incomplete input data"
    template = "Request body is larger than {limit} bytes"


class BadRequestId(LunaError):
    error_code = 12029
    http_status = 400
    desc = "Bad/incomplete input data"
    template = (
        "Bad header 'Luna-Request-Id': expected '<10-digit unix time>,<uuid>', "
        "for example '1536751345,8b8b5937-2e9c-4e8b-a7a7-5caf86621b5a'"
    )


class BadHost(LunaError):
    """A ``Host`` header naming none of ``LUNA_STREAMS_ALLOWED_HOSTS`` (DNS rebinding)."""

    error_code = 12031
    http_status = 400
    desc = "Bad/incomplete input data"
    template = "Bad header 'Host': '{host}' is not an allowed host (LUNA_STREAMS_ALLOWED_HOSTS)"


class EventSubscribersPerClientLimit(LunaError):
    """One client address holds ``LUNA_STREAMS_EVENTS_MAX_PER_CLIENT`` event streams already."""

    error_code = 12032
    http_status = 429
    desc = "Too many requests"
    template = (
        "At most {limit} event subscribers per client address "
        "(LUNA_STREAMS_EVENTS_MAX_PER_CLIENT); close one or retry later"
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(EVENTS_RETRY_AFTER)}


class BadPathId(LunaError):
    error_code = 12030
    http_status = 404
    desc = "Resource not found"
    template = "'{value}' is not a valid {name}: expected a lowercase uuid"


class StreamNotFound(LunaError):
    error_code = 39001
    http_status = 404
    desc = "Object not found"
    template = "Stream with id '{stream_id}' not found"


class BadStreamStatus(LunaError):
    error_code = 39002
    http_status = 400
    desc = "Bad input data"
    template = "'{status}' is not valid stream status; permitted: {permitted}"


class CannotStopInProgress(LunaError):
    error_code = 39003
    http_status = 400
    desc = "Unable to stop processing"
    template = "Stream '{stream_id}' already in progress and cannot be stopped"


class CannotCancelFinished(LunaError):
    error_code = 39005
    http_status = 400
    desc = "Unable to cancel processing"
    template = "Stream '{stream_id}' is finished and cannot be cancelled"


class GroupExists(LunaError):
    error_code = 39006
    http_status = 409
    desc = "Unique constraint error"
    template = "Group named '{group_name}' already exists"


class GroupNameNotFound(LunaError):
    error_code = 39007
    http_status = 404
    desc = "Object not found"
    template = "Group named '{group_name}' not found"


class GroupNotFound(LunaError):
    error_code = 39008
    http_status = 404
    desc = "Object not found"
    template = "Group with id '{group_id}' not found"


class PreviewUrlNotFound(LunaError):
    error_code = 39009
    http_status = 404
    desc = "Object not found"
    template = "Not found '{kind}' preview url for stream with id '{stream_id}'"


class PreviewError(LunaError):
    error_code = 39010
    http_status = 500
    desc = "Preview processing error"
    template = "Preview processing error, {reason}"


class StreamNotConvertible(LunaError):
    error_code = 39011
    http_status = 409
    desc = "Stream cannot be shown in this API version"
    template = (
        "Stream '{stream_id}' was created with API v{created} and cannot be shown as "
        "v{asked}: {reason}"
    )


# --- authentication (LUNA_STREAMS_AUTH=on): codes of luna-streams' own --------------------


class Unauthorized(LunaError):
    """No credential, or one that is not valid (authentication is on)."""

    error_code = 12040
    http_status = 401
    desc = "Unauthorized"
    template = "{reason}"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="luna-streams"'}


class Forbidden(LunaError):
    """A valid credential whose role or account does not reach what it asked for."""

    error_code = 12041
    http_status = 403
    desc = "Forbidden"
    template = "{reason}"


class TokenNotFound(LunaError):
    error_code = 12043
    http_status = 404
    desc = "Object not found"
    template = "API token with id '{token_id}' not found"


class TooManyAuthFailures(LunaError):
    """Too many requests with a wrong credential from one address."""

    error_code = 12042
    http_status = 429
    desc = "Too many requests"
    template = (
        "Too many requests with a wrong credential from this address; retry after {retry_after} s"
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.params["retry_after"])}


# --- webhooks, bulk work: codes of luna-streams' own ----------------------------------


class WebhookNotFound(LunaError):
    error_code = 12044
    http_status = 404
    desc = "Object not found"
    template = "Webhook with id '{webhook_id}' not found"


class WebhookLimit(LunaError):
    error_code = 12045
    http_status = 409
    desc = "Too many webhooks"
    template = "An account has at most {limit} webhooks; delete one first"


class ImportLinesInvalid(LunaError):
    """An import with bad lines: nothing was written; ``lines`` names each one."""

    error_code = 12046
    http_status = 400
    desc = "Bad/incomplete input data"
    template = "{count} of the lines cannot be imported; nothing was written"

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        super().__init__(count=len(lines))
        self.lines = lines

    def body(self) -> dict[str, Any]:
        return {**super().body(), "lines": self.lines}


# --- internal errors ------------------------------------------------------------------


class ServiceError(Exception):
    """Base of the errors raised inside the service (never shown to clients as such)."""


class BackendUnavailable(ServiceError):
    """RabbitMQ or MongoDB did not answer: the same call may succeed later. The driver's
    own error is the ``__cause__``."""


class BrokerUnavailable(BackendUnavailable):
    """RabbitMQ cannot be reached, or the connection or channel of a call was lost or
    refused it (translated by :func:`shared.messaging.broker.broker_errors`)."""


class DatabaseUnavailable(BackendUnavailable):
    """MongoDB cannot be reached or did not answer in time (translated by
    :func:`shared.store.mongo.database_errors`)."""


class ConfigurationError(ServiceError):
    """The process cannot run as configured or installed (a required setting is missing)."""


class EmbeddedUnavailable(ConfigurationError):
    """The embedded MongoDB-wire server is not installed (the ``embedded`` extra)."""


class ConcurrentModification(ServiceError):
    """A stream changed under every one of our compare-and-set attempts (should not
    happen in practice)."""


class InvalidValue(ServiceError, ValueError):
    """A value the service cannot use; the message says why. Also a :class:`ValueError`,
    so that validators (pydantic turns a ``ValueError`` into a validation error) and
    callers that parse see it as one."""


class BadEventId(InvalidValue):
    """The text is not an event id this service gave (:mod:`shared.services.events`)."""


class WebhookUrlRefused(InvalidValue):
    """A webhook URL the policy refuses (:mod:`shared.services.webhooks.policy`): the reason."""


class PreviewUrlRefused(InvalidValue):
    """A preview URL :class:`shared.domain.preview_policy.PreviewPolicy` does not allow; the
    message says which rule."""


class NotConvertible(InvalidValue):
    """The stream's settings have no faithful form in the requested API version
    (:mod:`shared.domain.models.convert`)."""
