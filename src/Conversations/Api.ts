/** The stored history: a caller's conversations and their transcripts, kept after their sessions expire. */
import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { ApiKeyAuth } from "../Auth.js"
import { asErrorBody, ServiceUnavailable, ValidationError, withErrors } from "../Domain/Errors.js"
import { SessionId, SessionMessage } from "../Domain/Session.js"
import { RateLimitMiddleware } from "../Http/RateLimit.js"
import { ConversationNotFound, StorageUnavailable } from "../Storage.js"

export const MAX_PAGE_SIZE = 100
export const DEFAULT_PAGE_SIZE = 20

export const ConversationSummary = Schema.Struct({
  id: SessionId.annotations({ description: "The conversation's id: the session_id of its turns" }),
  title: Schema.String.annotations({ description: "The start of its first message" }),
  created_at: Schema.DateTimeUtc,
  updated_at: Schema.DateTimeUtc
}).annotations({ identifier: "ConversationSummary" })

export const ConversationList = Schema.Struct({
  conversations: Schema.Array(ConversationSummary).annotations({ description: "Newest first" }),
  next_cursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` for the next page; null on the last page"
  })
}).annotations({ identifier: "ConversationList" })

export const ConversationTranscript = Schema.Struct({
  ...ConversationSummary.fields,
  messages: Schema.Array(SessionMessage).annotations({ description: "Oldest first" })
}).annotations({ identifier: "ConversationTranscript" })

export const ListParams = Schema.Struct({
  cursor: Schema.optional(Schema.String).annotations({ description: "The next_cursor of the previous page" }),
  limit: Schema.optional(
    Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, MAX_PAGE_SIZE)).annotations({
      description: `Conversations per page, 1 to ${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})`
    })
  )
})

export class ConversationsApi extends HttpApiGroup.make("conversations")
  .add(
    withErrors(
      HttpApiEndpoint.get("listConversations", "/v1/conversations")
        .setUrlParams(ListParams)
        .addSuccess(ConversationList),
      StorageUnavailable
    ).annotate(OpenApi.Summary, "Your conversations, newest first, a page at a time")
  )
  .add(
    withErrors(
      HttpApiEndpoint.get("getConversation", "/v1/conversations/:id")
        .setPath(Schema.Struct({ id: SessionId }))
        .addSuccess(ConversationTranscript),
      ConversationNotFound,
      StorageUnavailable
    ).annotate(OpenApi.Summary, "A conversation's whole transcript")
  )
  .addError(asErrorBody(ValidationError))
  .addError(asErrorBody(ServiceUnavailable))
  // Added first, so that it runs inside ApiKeyAuth: rate limits are per key.
  .middleware(RateLimitMiddleware)
  .middleware(ApiKeyAuth)
  .annotate(OpenApi.Title, "Conversations")
  .annotate(
    OpenApi.Description,
    "Every conversation is stored with its messages, also after its session expired; deleting the session " +
      "(DELETE /v1/chat/session) deletes it. Every endpoint needs the X-API-Key header."
  ) {}
