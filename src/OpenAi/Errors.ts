/**
 * Errors on the OpenAI-compatible endpoints keep Nexxi's statuses but take OpenAI's shape, which OpenAI's SDKs
 * decode into their error classes:
 *
 *   {"error": {"message": "...", "type": "invalid_request_error", "code": "content_blocked", "param": null,
 *              "request_id": "..."}}
 *
 * `type` is OpenAI's class of error (by status), `code` is Nexxi's own error type, `param` the invalid field.
 * Nexxi's other details (`categories`, `retry_after_seconds`, `limit`) stay alongside.
 */
import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import type { ClientErrorClass, ErrorDetail, ErrorInstance } from "../Domain/Errors.js"
import { ErrorDetail as NexxiErrorDetail, errorDetails, withErrorBodies } from "../Domain/Errors.js"

/** The paths that answer in OpenAI's formats. */
const OPENAI_PATHS: ReadonlyArray<string> = ["/v1/chat/completions", "/v1/models"]

export const speaksOpenAi = (url: string): boolean => {
  const end = url.search(/[?#]/)
  const path = end === -1 ? url : url.slice(0, end)
  return OPENAI_PATHS.some((prefix) => path === prefix || path.startsWith(`${prefix}/`))
}

const openAiType = (status: number): string => {
  switch (status) {
    case 401:
      return "authentication_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 429:
      return "rate_limit_error"
    default:
      return status >= 500 ? "server_error" : "invalid_request_error"
  }
}

export const OpenAiErrorBody = Schema.Struct({
  error: Schema.Struct({
    message: Schema.String,
    type: Schema.String.annotations({ description: "OpenAI's class of error, e.g. `invalid_request_error`" }),
    code: Schema.NullOr(Schema.String).annotations({ description: "Nexxi's error type, e.g. `content_blocked`" }),
    param: Schema.NullOr(Schema.String).annotations({ description: "The request field that was invalid" }),
    ...NexxiErrorDetail.omit("type", "message", "field").fields
  })
}).annotations({ identifier: "OpenAiErrorBody" })
export type OpenAiErrorBody = typeof OpenAiErrorBody.Type

/** Nexxi's error detail in OpenAI's shape. */
export const toOpenAiError = (status: number, detail: ErrorDetail): OpenAiErrorBody => {
  const { type, message, field, ...rest } = detail
  return { error: { message, type: openAiType(status), code: type, param: field ?? null, ...rest } }
}

/** A client error documented (OpenAPI) with OpenAI's error body and its own status; decodes back into the error. */
export const asOpenAiErrorBody = <C extends ClientErrorClass>(
  errorClass: C
): Schema.Schema<ErrorInstance<C>, OpenAiErrorBody> => {
  const status = HttpApiSchema.getStatusError(errorClass)
  const decode = Schema.decodeUnknownSync(errorClass as Schema.Schema<ErrorInstance<C>, unknown>)
  return Schema.transform(OpenAiErrorBody, Schema.typeSchema(errorClass as Schema.Schema<ErrorInstance<C>, unknown>), {
    strict: false,
    decode: ({ error: { code: _code, param, type: _type, request_id: _id, ...rest } }) =>
      decode({ ...rest, ...(param === null ? {} : { field: param }), _tag: errorClass._tag }),
    encode: (error) => toOpenAiError(status, { ...errorDetails(error), request_id: "" })
  }).annotations(HttpApiSchema.annotations({ status }))
}

/** Adds client errors to an endpoint, each documented with OpenAI's error body and its own status. */
export const withOpenAiErrors = withErrorBodies(asOpenAiErrorBody)
