/**
 * Renders every failure of a request as the common error body (`Domain/Errors.ts`) with the right status: the
 * client errors of Nexxi's services (status from their schema annotation) and what the HTTP layer itself finds
 * (malformed JSON, schema violations, oversized bodies, unknown routes). Anything else is a bug: logged with its
 * cause, answered 500 with the request id and no details.
 */
import { HttpApiError, HttpApiSchema, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, Option, Predicate, SchemaAST as AST } from "effect"
import {
  type ErrorDetail,
  errorDetails,
  InternalError,
  MalformedJson,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  ValidationError
} from "../Domain/Errors.js"
import { speaksOpenAi, toOpenAiError } from "../OpenAi/Errors.js"
import { currentRequestId } from "./RequestId.js"
import type { RouteLookup } from "./Routes.js"

type Detail = Omit<ErrorDetail, "request_id">

const respond = (status: number, detail: Detail, headers: Record<string, string> = {}) =>
  Effect.map(Effect.all([currentRequestId, HttpServerRequest.HttpServerRequest]), ([request_id, request]) =>
    HttpServerResponse.unsafeJson(
      // The OpenAI-compatible endpoints answer in OpenAI's error shape, with the same status.
      speaksOpenAi(request.url)
        ? toOpenAiError(status, { ...detail, request_id })
        : { error: { ...detail, request_id } },
      {
        status,
        headers:
          detail.retry_after_seconds === undefined
            ? headers
            : { ...headers, "retry-after": String(Math.max(1, Math.ceil(detail.retry_after_seconds))) }
      }
    )
  )

/** Renders a client error (a `Schema.TaggedError` with a declared status) as the common error body. */
export const errorResponse = (
  error: { readonly _tag: string; readonly message: string },
  headers: Record<string, string> = {}
) =>
  respond(
    Option.getOrElse(declaredStatus(error), () => 500),
    errorDetails(error),
    headers
  )

/** The HTTP status a client error class declares through its schema, if the value is one. */
const declaredStatus = (error: unknown): Option.Option<number> => {
  const ast = Predicate.isObject(error) ? (error.constructor as { ast?: AST.AST }).ast : undefined
  if (ast === undefined || !AST.isTransformation(ast)) return Option.none()
  const NONE = -1
  const status = HttpApiSchema.getStatus(ast, NONE)
  return status === NONE ? Option.none() : Option.some(status)
}

const isClientError = (error: unknown): error is { readonly _tag: string; readonly message: string } =>
  Predicate.hasProperty(error, "_tag") && Predicate.hasProperty(error, "message")

/** The first schema issue, named by its field: what a client needs to fix its request. */
const validationError = (error: HttpApiError.HttpApiDecodeError): ValidationError => {
  const issue = error.issues[0]
  if (issue === undefined) return new ValidationError({ message: error.message })
  const field = issue.path.map(String).join(".")
  return field.length > 0
    ? new ValidationError({ message: `${field}: ${issue.message}`, field })
    : new ValidationError({ message: `body: ${issue.message}` })
}

/** Body reading fails as a RequestError: either not JSON, or more bytes than allowed. */
const requestErrorResponse = (error: HttpServerError.RequestError, maxBodyBytes: number) =>
  error.cause instanceof SyntaxError
    ? errorResponse(new MalformedJson({ message: `The body is not valid JSON: ${error.cause.message}` }))
    : String(error.cause).includes("maxBytes exceeded")
      ? payloadTooLarge(maxBodyBytes)
      : errorResponse(new MalformedJson({ message: "The request body could not be read" }))

/** Sent without reading the body; the connection closes so the unread rest of it is not taken as a request. */
export const payloadTooLarge = (maxBodyBytes: number) =>
  errorResponse(new PayloadTooLarge({ message: `The body is larger than the limit of ${maxBodyBytes} bytes` }), {
    connection: "close"
  })

export const routeNotFound = (lookup: RouteLookup, method: string, pathname: string) =>
  lookup._tag === "MethodNotAllowed"
    ? errorResponse(
        new MethodNotAllowed({
          message: `${method} is not allowed on ${lookup.route}; use ${lookup.allow.join(", ")}`
        }),
        { allow: lookup.allow.join(", ") }
      )
    : errorResponse(new NotFound({ message: `No route ${method} ${pathname}` }))

/**
 * Turns a failed request into a response. Interruption is passed through: the client is gone, or the server is
 * shutting down, and nobody is left to read an answer.
 */
export const renderFailure =
  (options: { readonly maxBodyBytes: number; readonly lookup: (method: string, pathname: string) => RouteLookup }) =>
  (
    cause: Cause.Cause<unknown>
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause) as never
    const error = Cause.squash(cause)
    if (error instanceof HttpApiError.HttpApiDecodeError) return errorResponse(validationError(error))
    if (error instanceof HttpServerError.RouteNotFound) {
      const url = new URL(error.request.url, "http://nexxi")
      return routeNotFound(options.lookup(error.request.method, url.pathname), error.request.method, url.pathname)
    }
    if (error instanceof HttpServerError.RequestError) return requestErrorResponse(error, options.maxBodyBytes)
    const status = declaredStatus(error)
    if (Option.isSome(status) && isClientError(error)) return respond(status.value, errorDetails(error))
    return Effect.zipRight(
      Effect.logError("Unexpected failure", cause),
      errorResponse(new InternalError({ message: "Internal error; quote the request id when reporting it" }))
    )
  }
