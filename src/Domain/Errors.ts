/**
 * Every error a client sees has one JSON shape:
 *
 *   {"error": {"type": "session_not_found", "message": "...", "request_id": "..."}}
 *
 * plus optional details (`field`, `categories`, `retry_after_seconds`). Errors raised by Nexxi's own code are
 * `Schema.TaggedError`s annotated with their HTTP status; `Http/Errors.ts` renders them, and the errors the HTTP
 * layer itself detects (bad JSON, unknown route, ...), in this shape.
 */
import { type HttpApiEndpoint, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

export const ErrorDetail = Schema.Struct({
  type: Schema.String.annotations({ description: "Machine-readable error type, e.g. `validation_error`" }),
  message: Schema.String.annotations({ description: "What was wrong, for a person" }),
  request_id: Schema.String.annotations({ description: "The request's X-Request-Id, for support" }),
  field: Schema.optional(Schema.String).annotations({ description: "The request field that was invalid" }),
  categories: Schema.optional(Schema.Array(Schema.String)),
  retry_after_seconds: Schema.optional(Schema.Number),
  limit: Schema.optional(Schema.String).annotations({
    description: "Which rate limit was reached (rate_limited): requests, tokens, concurrency or auth_failures"
  })
})
export type ErrorDetail = typeof ErrorDetail.Type

export const ErrorBody = Schema.Struct({ error: ErrorDetail }).annotations({ identifier: "ErrorBody" })
export type ErrorBody = typeof ErrorBody.Type

/** `SessionNotFound` → `session_not_found`. */
export const errorType = (tag: string): string =>
  tag
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z])([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()

/** A `Schema.TaggedError` class with a `message` field, as every client-facing error is. */
export interface ClientErrorClass extends Schema.Schema.AnyNoContext {
  readonly _tag: string
  new (...args: ReadonlyArray<never>): { readonly _tag: string; readonly message: string }
}

export type ErrorInstance<C> = C extends new (...args: ReadonlyArray<never>) => infer A ? A : never

/**
 * The schema of a client error as it goes over the wire, for `addError`: OpenAPI then documents the real body,
 * and typed clients decode it back into the error class.
 */
export const asErrorBody = <C extends ClientErrorClass>(errorClass: C): Schema.Schema<ErrorInstance<C>, ErrorBody> => {
  const decode = Schema.decodeUnknownSync(errorClass as Schema.Schema<ErrorInstance<C>, unknown>)
  return Schema.transform(ErrorBody, Schema.typeSchema(errorClass as Schema.Schema<ErrorInstance<C>, unknown>), {
    strict: false,
    decode: ({ error }) => decode({ ...error, _tag: errorClass._tag }),
    encode: (error) => ({ error: { ...errorDetails(error), request_id: "" } })
  }).annotations(HttpApiSchema.annotations({ status: HttpApiSchema.getStatusError(errorClass) }))
}

/** How an API documents a client error: the schema of its body on the wire, decoding back into the error. */
export type ErrorBodyOf<Body> = <C extends ClientErrorClass>(errorClass: C) => Schema.Schema<ErrorInstance<C>, Body>

/** Adds client errors to an endpoint, each documented with the body `asBody` gives it and its own status. */
export const withErrorBodies =
  <Body>(asBody: ErrorBodyOf<Body>) =>
  <Endpoint extends HttpApiEndpoint.HttpApiEndpoint.Any, const Errors extends ReadonlyArray<ClientErrorClass>>(
    endpoint: Endpoint,
    ...errors: Errors
  ): HttpApiEndpoint.HttpApiEndpoint.AddError<Endpoint, ErrorInstance<Errors[number]>, never> =>
    errors.reduce(
      (withSome: HttpApiEndpoint.HttpApiEndpoint.AnyWithProps, error) => withSome.addError(asBody(error)),
      endpoint as unknown as HttpApiEndpoint.HttpApiEndpoint.AnyWithProps
    ) as never

/** Adds client errors to an endpoint, each documented with the common error body and its own status. */
export const withErrors = withErrorBodies(asErrorBody)

/** The fields of a client error that go into the body, next to `type` and `message`. */
export const errorDetails = (error: { readonly _tag: string; readonly message: string }) => {
  const { _tag, message, ...details } = error as { _tag: string; message: string } & Record<string, unknown>
  return { ...details, type: errorType(_tag), message } as Omit<ErrorDetail, "request_id">
}

/**
 * Declares an error a client can see: a `Schema.TaggedError` with a `message` (and optional other fields) that
 * carries its HTTP status and a description for OpenAPI.
 */
export const ClientError =
  <Self>() =>
  <Tag extends string, Fields extends Schema.Struct.Fields = {}>(
    tag: Tag,
    status: number,
    description: string,
    fields: Fields = {} as Fields
  ) =>
    Schema.TaggedError<Self>()(
      tag,
      { message: Schema.String, ...fields },
      HttpApiSchema.annotations({ status, description })
    )

/** For errors a client may retry: how long to wait, also sent as `Retry-After`. */
export const retryAfter = { retry_after_seconds: Schema.optional(Schema.Number) }

// Errors shared by several endpoints.

export class Unauthorized extends ClientError<Unauthorized>()("Unauthorized", 401, "Missing or wrong X-API-Key") {}

export class ValidationError extends ClientError<ValidationError>()(
  "ValidationError",
  422,
  "The request does not match the schema",
  { field: Schema.optional(Schema.String) }
) {}

export class ServiceUnavailable extends ClientError<ServiceUnavailable>()(
  "ServiceUnavailable",
  503,
  "A dependency is down; retry later",
  retryAfter
) {}

// Errors the HTTP layer itself detects, before any handler runs.

export class MalformedJson extends ClientError<MalformedJson>()("MalformedJson", 400, "The body is not valid JSON") {}

export class NotFound extends ClientError<NotFound>()("NotFound", 404, "No such route") {}

export class MethodNotAllowed extends ClientError<MethodNotAllowed>()(
  "MethodNotAllowed",
  405,
  "The route exists with another method (see Allow)"
) {}

export class PayloadTooLarge extends ClientError<PayloadTooLarge>()(
  "PayloadTooLarge",
  413,
  "The body is larger than MAX_BODY_BYTES"
) {}

export class UnsupportedMediaType extends ClientError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  415,
  "The body is not sent as application/json"
) {}

export class InternalError extends ClientError<InternalError>()(
  "InternalError",
  500,
  "A bug: quote the request id when reporting it"
) {}
