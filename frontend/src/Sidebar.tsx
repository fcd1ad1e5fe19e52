// The conversation list: newest first, paginated, new conversation (with an agent choice), inline rename, delete.
import { useRef, useState } from "react";
import type { Agent, Conversation } from "./api";

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
}

export function Sidebar(props: SidebarProps) {
  const { agents, conversations, currentId } = props;
  const [renaming, setRenaming] = useState<string | null>(null);
  // An untitled conversation has never had a message (the first one names it): only the open one is listed.
  const shown = conversations.filter((c) => c.title || c.id === currentId);
  return (
    <aside className="sidebar" aria-label="Conversations">
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
      <ul className="conversations">
        {shown.map((c) => (
          <li key={c.id} className={c.id === currentId ? "current" : ""}>
            {renaming === c.id ? (
              <RenameInput
                title={c.title}
                onDone={(title) => {
                  setRenaming(null);
                  if (title !== null && title !== c.title) props.onRename(c.id, title);
                }}
              />
            ) : (
              <a
                href={`/c/${c.id}/`}
                aria-current={c.id === currentId ? "page" : undefined}
                onClick={(e) => {
                  e.preventDefault();
                  props.onOpen(c.id);
                }}
              >
                {c.title || "New conversation"}
                {agents.length > 1 && <small className="agent-name">{c.agent_name}</small>}
              </a>
            )}
            <button type="button" className="icon" aria-label={`Rename “${c.title || "conversation"}”`} onClick={() => setRenaming(c.id)}>
              ✎
            </button>
            <button type="button" className="icon" aria-label={`Delete “${c.title || "conversation"}”`} onClick={() => props.onDelete(c)}>
              ✕
            </button>
          </li>
        ))}
      </ul>
      {props.hasMore && (
        <button type="button" onClick={props.onMore}>
          More conversations
        </button>
      )}
    </aside>
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
