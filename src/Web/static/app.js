// The web chat: a conversation list, the current conversation, and a composer that streams replies token by
// token. Everything goes through Nexxi's JSON API with the API key kept in this tab's session storage.
import { ApiError, chatStream, deleteConversation, getConversation, listConversations } from "./api.js"
import { describeError } from "./errors.js"
import { renderMarkdown } from "./markdown.js"

const KEY_STORAGE = "nexxi.apiKey"
const PHONE = window.matchMedia("(max-width: 760px)")

const byId = (id) => document.getElementById(id)
const ui = {
  sidebar: byId("sidebar"),
  scrim: byId("scrim"),
  openSidebar: byId("open-sidebar"),
  closeSidebar: byId("close-sidebar"),
  newChat: byId("new-chat"),
  historyStatus: byId("history-status"),
  list: byId("conversation-list"),
  loadMore: byId("load-more"),
  changeKey: byId("change-key"),
  chat: document.querySelector("main"),
  title: byId("chat-title"),
  deleteChat: byId("delete-chat"),
  messages: byId("messages"),
  emptyState: byId("empty-state"),
  error: byId("error"),
  errorText: byId("error-text"),
  dismissError: byId("dismiss-error"),
  composer: byId("composer"),
  input: byId("composer-input"),
  send: byId("send"),
  stop: byId("stop"),
  keyDialog: byId("key-dialog"),
  keyForm: byId("key-form"),
  keyInput: byId("key-input"),
  keyError: byId("key-error"),
  keyCancel: byId("key-cancel"),
  keySubmit: byId("key-submit"),
  confirmDialog: byId("confirm-dialog"),
  confirmForm: byId("confirm-form"),
  confirmCancel: byId("confirm-cancel"),
  announcer: byId("announcer")
}

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  /** The open conversation's id (null: a new conversation, created by its first message). */
  sessionId: null,
  conversations: [],
  nextCursor: null,
  /** The reply being written: its AbortController. */
  streaming: null,
  /** A conversation started here, listed until the stored list has it (storage writes lag a moment). */
  pending: null,
  /** Incremented whenever another conversation is opened, so late answers for the previous one are dropped. */
  view: 0
}

const announce = (text) => {
  ui.announcer.textContent = ""
  // A new text node on the next frame, so that repeating the same words is announced again.
  requestAnimationFrame(() => (ui.announcer.textContent = text))
}

// --- Errors -------------------------------------------------------------------------------------------------

const showError = (error) => {
  ui.errorText.textContent = typeof error === "string" ? error : describeError(error)
  ui.error.hidden = false
}

const hideError = () => {
  ui.error.hidden = true
  ui.errorText.textContent = ""
}

/** A wrong key is fixed by entering another one: the error says so, and the key dialog opens. */
const handleFailure = (error) => {
  if (!(error instanceof ApiError)) console.error(error)
  showError(error)
  if (error instanceof ApiError && error.detail.type === "unauthorized") {
    // A key that is no longer accepted (revoked, or the server's changed) is forgotten, also for a reload.
    state.key = null
    sessionStorage.removeItem(KEY_STORAGE)
    askForKey(describeError(error))
  }
}

// --- API key ------------------------------------------------------------------------------------------------

const askForKey = (message = "") => {
  ui.keyError.textContent = message
  ui.keyInput.value = ""
  ui.keyCancel.hidden = state.key === null
  if (!ui.keyDialog.open) ui.keyDialog.showModal()
  ui.keyInput.focus()
}

ui.keyForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  const key = ui.keyInput.value.trim()
  if (key === "") {
    ui.keyError.textContent = "Enter your API key."
    ui.keyInput.focus()
    return
  }
  ui.keySubmit.disabled = true
  ui.keyError.textContent = ""
  try {
    // Checks the key and loads the conversation list in one call.
    const page = await listConversations(key)
    state.key = key
    sessionStorage.setItem(KEY_STORAGE, key)
    ui.keyDialog.close()
    hideError()
    showConversations(page, false)
    ui.input.focus()
  } catch (error) {
    ui.keyError.textContent = describeError(error)
    ui.keyInput.focus()
  } finally {
    ui.keySubmit.disabled = false
  }
})

ui.keyCancel.addEventListener("click", () => ui.keyDialog.close())
// Without a key there is nothing to go back to: Escape does not close the dialog then.
ui.keyDialog.addEventListener("cancel", (event) => {
  if (state.key === null) event.preventDefault()
})
ui.changeKey.addEventListener("click", () => askForKey())

// --- Conversation list --------------------------------------------------------------------------------------

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" })

const renderConversationList = () => {
  const items = state.conversations.map((conversation) => {
    const item = document.createElement("li")
    const button = document.createElement("button")
    button.type = "button"
    button.dataset.id = conversation.id
    if (conversation.id === state.sessionId) button.setAttribute("aria-current", "true")
    const title = document.createElement("span")
    title.className = "conversation-title"
    title.textContent = conversation.title || "Untitled"
    const date = document.createElement("span")
    date.className = "conversation-date"
    date.textContent = dateFormat.format(new Date(conversation.updated_at))
    button.append(title, date)
    button.addEventListener("click", () => openConversation(conversation.id))
    item.append(button)
    return item
  })
  ui.list.replaceChildren(...items)
  ui.loadMore.hidden = state.nextCursor === null
  ui.historyStatus.textContent = state.conversations.length === 0 ? "No conversations yet." : ""
}

const showConversations = (page, append) => {
  const known = new Set(append ? state.conversations.map((conversation) => conversation.id) : [])
  const fresh = page.conversations.filter((conversation) => !known.has(conversation.id))
  state.conversations = append ? [...state.conversations, ...fresh] : fresh
  state.nextCursor = page.next_cursor
  // A conversation just started may not be stored yet: keep it listed until it is.
  const current = state.sessionId && !state.conversations.some((c) => c.id === state.sessionId)
  if (current && state.pending?.id === state.sessionId) state.conversations.unshift(state.pending)
  renderConversationList()
}

const refreshConversations = async () => {
  if (state.key === null) return
  try {
    showConversations(await listConversations(state.key), false)
  } catch (error) {
    if (error instanceof ApiError && error.detail.type === "unauthorized") handleFailure(error)
    else ui.historyStatus.textContent = `The conversation list could not be loaded. ${describeError(error)}`
  }
}

ui.loadMore.addEventListener("click", async () => {
  try {
    showConversations(await listConversations(state.key, state.nextCursor), true)
  } catch (error) {
    handleFailure(error)
  }
})

// --- Sidebar on phones --------------------------------------------------------------------------------------

const setSidebar = (open, { returnFocus = true } = {}) => {
  ui.sidebar.classList.toggle("open", open)
  ui.scrim.hidden = !open
  ui.openSidebar.setAttribute("aria-expanded", String(open))
  // While the list covers the chat, the chat is out of reach of the keyboard and of screen readers.
  ui.chat.inert = open && PHONE.matches
  if (open) (ui.list.querySelector("[aria-current]") ?? ui.newChat).focus()
  else if (returnFocus && PHONE.matches) ui.openSidebar.focus()
}

ui.openSidebar.addEventListener("click", () => setSidebar(true))
ui.closeSidebar.addEventListener("click", () => setSidebar(false))
ui.scrim.addEventListener("click", () => setSidebar(false))
ui.sidebar.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.sidebar.classList.contains("open")) setSidebar(false)
})
PHONE.addEventListener("change", () => setSidebar(false, { returnFocus: false }))

// --- Messages -----------------------------------------------------------------------------------------------

const scrollToEnd = () => {
  ui.messages.scrollTop = ui.messages.scrollHeight
}

/** One message: the user's as plain text, the assistant's as sanitised Markdown. */
const addMessage = (role, content, { interrupted = false, meta = "" } = {}) => {
  ui.emptyState.hidden = true
  const article = document.createElement("article")
  article.className = `message message-${role}`
  const author = document.createElement("h3")
  author.className = "message-author visually-hidden"
  author.textContent = role === "user" ? "You said:" : "Nexxi replied:"
  const body = document.createElement("div")
  body.className = "message-body"
  if (role === "user") body.textContent = content
  else renderMarkdown(body, content)
  const metaLine = document.createElement("p")
  metaLine.className = "message-meta"
  article.append(author, body, metaLine)
  setMeta(article, { interrupted, meta })
  ui.messages.append(article)
  scrollToEnd()
  return article
}

const setMeta = (article, { interrupted = false, meta = "" }) => {
  const line = article.querySelector(".message-meta")
  line.replaceChildren()
  if (interrupted) {
    const stopped = document.createElement("span")
    stopped.className = "stopped"
    stopped.textContent = "Stopped"
    line.append(stopped, meta ? ` · ${meta}` : "")
  } else {
    line.textContent = meta
  }
  line.hidden = !interrupted && meta === ""
}

const clearMessages = () => {
  ui.messages.replaceChildren(ui.emptyState)
  ui.emptyState.hidden = false
}

const setTitle = (title) => {
  ui.title.textContent = title
  document.title = title === "New conversation" ? "Nexxi" : `${title} – Nexxi`
  ui.deleteChat.hidden = state.sessionId === null
}

// --- Opening, starting and deleting conversations -----------------------------------------------------------

const stopReply = () => state.streaming?.abort()

const startNewChat = () => {
  stopReply()
  state.view += 1
  state.sessionId = null
  hideError()
  clearMessages()
  setTitle("New conversation")
  renderConversationList()
  setSidebar(false, { returnFocus: false })
  ui.input.focus()
}

const openConversation = async (id) => {
  stopReply()
  const view = ++state.view
  hideError()
  try {
    const conversation = await getConversation(state.key, id)
    if (view !== state.view) return
    state.sessionId = conversation.id
    clearMessages()
    for (const message of conversation.messages) {
      addMessage(message.role, message.content, { interrupted: message.interrupted })
    }
    setTitle(conversation.title || "Untitled")
    renderConversationList()
    setSidebar(false, { returnFocus: false })
    announce(`Opened “${conversation.title}”, ${conversation.messages.length} messages`)
    ui.input.focus()
  } catch (error) {
    if (view === state.view) handleFailure(error)
  }
}

ui.newChat.addEventListener("click", startNewChat)

ui.deleteChat.addEventListener("click", () => {
  ui.confirmDialog.showModal()
  ui.confirmCancel.focus()
})
ui.confirmCancel.addEventListener("click", () => {
  ui.confirmDialog.close()
  ui.deleteChat.focus()
})
ui.confirmForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  ui.confirmDialog.close()
  const id = state.sessionId
  if (id === null) return
  stopReply()
  try {
    await deleteConversation(state.key, id)
    state.conversations = state.conversations.filter((conversation) => conversation.id !== id)
    startNewChat()
    announce("The conversation was deleted")
    void refreshConversations()
  } catch (error) {
    handleFailure(error)
    ui.deleteChat.focus()
  }
})

// --- Sending and streaming ----------------------------------------------------------------------------------

const setStreaming = (controller) => {
  state.streaming = controller
  ui.send.hidden = controller !== null
  ui.stop.hidden = controller === null
}

/** Renders the growing reply at most once per frame, however fast the tokens come. */
const makeRenderer = (body) => {
  let text = ""
  let scheduled = false
  const flush = () => {
    scheduled = false
    renderMarkdown(body, text)
    scrollToEnd()
  }
  return {
    get text() {
      return text
    },
    append: (delta) => {
      text += delta
      if (!scheduled) {
        scheduled = true
        requestAnimationFrame(flush)
      }
    },
    flush
  }
}

/** The title Nexxi stores for a conversation: its first message on one line, cut when long. */
const titleOf = (message) => {
  const chars = [...message.replace(/\s+/g, " ").trim()]
  return chars.length <= 80 ? chars.join("") : chars.slice(0, 79).join("").trimEnd() + "…"
}

const send = async (message) => {
  hideError()
  const view = state.view
  const controller = new AbortController()
  const userMessage = addMessage("user", message)
  const reply = addMessage("assistant", "")
  reply.classList.add("message-streaming")
  reply.setAttribute("aria-busy", "true")
  const body = reply.querySelector(".message-body")
  const renderer = makeRenderer(body)
  setStreaming(controller)
  ui.input.value = ""
  announce("Nexxi is writing a reply")

  let finished = null
  let failure = null
  try {
    for await (const chunk of chatStream(state.key, { message, sessionId: state.sessionId }, controller.signal)) {
      if (state.sessionId === null) {
        state.sessionId = chunk.session_id
        state.pending = { id: chunk.session_id, title: titleOf(message), updated_at: new Date() }
        setTitle(state.pending.title)
        showConversations({ conversations: state.conversations, next_cursor: state.nextCursor }, false)
      }
      renderer.append(chunk.delta)
      if (chunk.finished) finished = chunk
    }
  } catch (error) {
    failure = error
  }

  const stopped = controller.signal.aborted
  setStreaming(null)
  renderer.flush()
  reply.classList.remove("message-streaming")
  reply.removeAttribute("aria-busy")
  if (view !== state.view) return

  if (failure !== null && !stopped && renderer.text === "") {
    // Refused before any reply (wrong key, rate limit, blocked, model down): the message was not sent; give it
    // back to edit or resend.
    reply.remove()
    userMessage.remove()
    if (ui.messages.querySelector(".message") === null) ui.emptyState.hidden = false
    if (ui.input.value === "") ui.input.value = message
    handleFailure(failure)
    ui.input.focus()
    return
  }
  if (finished !== null) {
    setMeta(reply, { meta: `${finished.model} · ${finished.tokens_used} tokens` })
    announce("Reply finished")
  } else if (stopped) {
    setMeta(reply, { interrupted: true })
    announce("Reply stopped")
  } else {
    setMeta(reply, { interrupted: true, meta: "the reply was cut off" })
    if (failure !== null) handleFailure(failure)
    else showError("The connection closed before the reply was complete.")
  }
  void refreshConversations()
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault()
  const message = ui.input.value
  if (state.streaming !== null) return
  if (message.trim() === "") {
    ui.input.focus()
    return
  }
  if (state.key === null) {
    askForKey()
    return
  }
  void send(message)
})

ui.input.addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter (and Enter while an input method composes) is a new line.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault()
    ui.composer.requestSubmit()
  }
})

ui.stop.addEventListener("click", () => {
  stopReply()
  ui.input.focus()
})

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.streaming !== null && !ui.keyDialog.open && !ui.confirmDialog.open) {
    stopReply()
    ui.input.focus()
  }
})

ui.dismissError.addEventListener("click", () => {
  hideError()
  ui.input.focus()
})

// --- Start ----------------------------------------------------------------------------------------------------

if (state.key === null) askForKey()
else void refreshConversations()
