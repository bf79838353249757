/** The whole HTTP API of Nexxi; OpenAPI (`/openapi.json`, `/docs`) is generated from it. */
import { HttpApi, OpenApi } from "@effect/platform"
import { ChatApi } from "./Chat/Api.js"
import { ConversationsApi } from "./Conversations/Api.js"
import { asErrorBody, InternalError } from "./Domain/Errors.js"
import { OpenAiApi } from "./OpenAi/Api.js"
import { SystemApi } from "./System/Api.js"
import { WebApi } from "./Web/Api.js"

const DECODE_ERROR_REF = "#/components/schemas/HttpApiDecodeError"

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an OpenAPI document is plain JSON
type Json = Record<string, any>

/**
 * HttpApi documents its built-in decode error as a 400 on every endpoint; Nexxi answers schema violations with
 * 422 and its own error body (`ValidationError`, documented per endpoint), so that entry is removed.
 */
const withoutBuiltinDecodeError = (spec: Json): Json => {
  const paths = spec.paths as Json
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations as Json)) {
      const responses = (operation as Json).responses as Json | undefined
      const schema = responses?.["400"]?.content?.["application/json"]?.schema as Json | undefined
      if (!responses || !schema) continue
      if (schema.$ref === DECODE_ERROR_REF) {
        delete responses["400"]
      } else if (Array.isArray(schema.anyOf)) {
        const rest = schema.anyOf.filter((member: Json) => member.$ref !== DECODE_ERROR_REF)
        responses["400"].content["application/json"].schema = rest.length === 1 ? rest[0] : { anyOf: rest }
      }
    }
  }
  const schemas = (spec.components as Json).schemas as Json
  for (const name of ["HttpApiDecodeError", "Issue", "PropertyKey"]) delete schemas[name]
  return spec
}

export class Api extends HttpApi.make("nexxi")
  .add(ChatApi)
  .add(ConversationsApi)
  .add(OpenAiApi)
  .add(SystemApi)
  .add(WebApi)
  .addError(asErrorBody(InternalError))
  .annotate(OpenApi.Title, "Nexxi")
  .annotate(OpenApi.Description, "A chatbot API in front of a Text Generation Inference server")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(OpenApi.Transform, withoutBuiltinDecodeError) {}
