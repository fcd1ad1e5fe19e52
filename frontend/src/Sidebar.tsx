// The conversation list: newest first in Today / Yesterday / Earlier, paginated, new conversation (with
// an agent choice), inline rename, delete. Below 700 px wide it is a drawer over the chat.
import { useRef, useState } from "react";
import type { Agent, Conversation } from "./api";
import { fullTime, groupByDay, shortTime } from "./time";

interface SidebarProps {
  agents: Agent[];
  agentId: string;
  onAgent: (id: string) => void;
  conversations: Conversation[];
  currentId: string | null;
  hasMore: boolean;
  onMore: () => void;
  onOpen: (id: string | null) => void;
  onRename: (id: string, title: string) => void;
  onDelete: (conversation: Conversation) => void;
  /** The drawer is open (phone width); ignored where the sidebar is always shown. */
  open: boolean;
  onClose: () => void;
}

export function Sidebar(props: SidebarProps) {
  const { agents, conversations, currentId } = props;
  const [renaming, setRenaming] = useState<string | null>(null);
  // An untitled conversation has never had a message (the first one names it): only the open one is listed.
  const shown = conversations.filter((c) => c.title || c.id === currentId);
  const item = (c: Conversation) => {
    const title = c.title || "New conversation";
    return (
      <li key={c.id} className={c.id === currentId ? "current" : ""}>
        {titleOrRename(c, title)}
        <button type="button" className="icon" aria-label={`Rename “${title}”`} onClick={() => setRenaming(c.id)}>
          ✎
        </button>
        <button type="button" className="icon" aria-label={`Delete “${title}”`} onClick={() => props.onDelete(c)}>
          ✕
        </button>
      </li>
    );
  };
  const titleOrRename = (c: Conversation, title: string) =>
    renaming === c.id ? (
      <RenameInput
        title={c.title}
        onDone={(next) => {
          setRenaming(null);
          if (next !== null && next !== c.title) props.onRename(c.id, next);
        }}
      />
    ) : (
      <a
        href={`/c/${c.id}/`}
        aria-current={c.id === currentId ? "page" : undefined}
        title={`${title}\nLast message ${fullTime(c.updated_at)}`}
        onClick={(e) => {
          e.preventDefault();
          props.onOpen(c.id);
        }}
      >
        <span className="title">{title}</span>
        <small className="meta">
          <time dateTime={c.updated_at}>{shortTime(c.updated_at)}</time>
          {agents.length > 1 && ` · ${c.agent_name}`}
        </small>
      </a>
    );
  return (
    <>
      {props.open && <div className="backdrop" onClick={props.onClose} aria-hidden="true" />}
      <aside
        id="sidebar"
        className={`sidebar${props.open ? " open" : ""}`}
        aria-label="Conversations"
        onKeyDown={(e) => {
          if (e.key === "Escape" && props.open) props.onClose();
        }}
      >
        <div className="new">
          {agents.length > 1 && (
            <label>
              Agent
              <select value={props.agentId} onChange={(e) => props.onAgent(e.target.value)}>
                {agents.map((a) => (
                  <option key={a.id} value={a.id}>
                    {a.name}
                  </option>
                ))}
              </select>
            </label>
          )}
          <button type="button" onClick={() => props.onOpen(null)}>
            New conversation
          </button>
        </div>
        {!shown.length && <p className="none">Your conversations will be listed here.</p>}
        {groupByDay(shown, (c) => c.updated_at).map(({ group, items }) => (
          <section key={group} className="group" aria-label={group}>
            <h2>{group}</h2>
            <ul className="conversations">{items.map(item)}</ul>
          </section>
        ))}
        {props.hasMore && (
          <button type="button" onClick={props.onMore}>
            More conversations
          </button>
        )}
      </aside>
    </>
  );
}

/** Enter saves, Escape cancels, leaving the field saves; each edit ends exactly once. */
function RenameInput({ title, onDone }: { title: string; onDone: (title: string | null) => void }) {
  const finished = useRef(false);
  const finish = (value: string | null) => {
    if (finished.current) return;
    finished.current = true;
    onDone(value === null || !value.trim() ? null : value.trim());
  };
  return (
    <input
      aria-label="New title"
      defaultValue={title}
      maxLength={200}
      autoFocus
      onBlur={(e) => finish(e.target.value)}
      onKeyDown={(e) => {
        if (e.key === "Enter") finish(e.currentTarget.value);
        if (e.key === "Escape") finish(null);
      }}
    />
  );
}
