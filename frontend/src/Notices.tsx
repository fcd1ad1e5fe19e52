// Dismissible notices: problems said as sentences, with the one action that fixes them when there is one.
import type { Notice } from "./chat";

interface NoticesProps {
  notices: Notice[];
  onDismiss: (id: number) => void;
  onReconnect: () => void;
}

export function Notices({ notices, onDismiss, onReconnect }: NoticesProps) {
  if (!notices.length) return null;
  return (
    <div className="notices">
      {notices.map((n) => (
        <div key={n.id} className="notice" role="alert" data-code={n.code}>
          <span>{n.message}</span>
          <span className="notice-actions">
            {n.action === "reconnect" && (
              <button type="button" onClick={onReconnect}>
                Reconnect
              </button>
            )}
            {n.action === "reload" && (
              <button type="button" onClick={() => location.reload()}>
                Reload
              </button>
            )}
            <button type="button" className="icon" aria-label="Dismiss this notice" onClick={() => onDismiss(n.id)}>
              ✕
            </button>
          </span>
        </div>
      ))}
    </div>
  );
}
