/** Handlers of the conversation history endpoints: the caller's own conversations, from Storage. */
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import { Api } from "../Api.js"
import { ApiKeyAuthLive, CurrentCaller } from "../Auth.js"
import { ConversationNotFound, type ConversationSummary, Storage } from "../Storage.js"
import { DEFAULT_PAGE_SIZE } from "./Api.js"

const toSummary = (conversation: ConversationSummary) => ({
  id: conversation.id,
  title: conversation.title,
  created_at: conversation.createdAt,
  updated_at: conversation.updatedAt
})

export const ConversationsHttpLive = HttpApiBuilder.group(Api, "conversations", (handlers) =>
  Effect.gen(function* () {
    const storage = yield* Storage
    return handlers
      .handle("listConversations", ({ urlParams }) =>
        Effect.gen(function* () {
          const caller = yield* CurrentCaller
          const page = yield* storage.listConversations(caller.keyId, {
            cursor: Option.fromNullable(urlParams.cursor),
            limit: urlParams.limit ?? DEFAULT_PAGE_SIZE
          })
          return {
            conversations: page.conversations.map(toSummary),
            next_cursor: Option.getOrNull(page.nextCursor)
          }
        })
      )
      .handle("getConversation", ({ path }) =>
        Effect.gen(function* () {
          const caller = yield* CurrentCaller
          const found = yield* storage.conversation(caller.keyId, path.id)
          // Another key's conversation does not exist for this caller: the same 404 as an unknown id.
          if (Option.isNone(found)) {
            return yield* new ConversationNotFound({ message: `No conversation ${path.id}` })
          }
          return { ...toSummary(found.value), messages: found.value.messages }
        })
      )
  })
).pipe(Layer.provide(ApiKeyAuthLive))
