// A confirmation in a native modal <dialog>: focus is trapped and Escape cancels, by the browser.
import { useEffect, useRef } from 'preact/hooks';

export interface ConfirmRequest {
  title: string;
  body: string;
  action: string;
  run: () => Promise<void>;
}

export function Confirm({ request, onDone }: { request: ConfirmRequest | null; onDone: (error?: string) => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (request && !d.open) d.showModal();
    if (!request && d.open) d.close();
  }, [request]);
  const go = async () => {
    if (!request) return;
    try {
      await request.run();
      onDone();
    } catch (e) {
      onDone((e as Error).message);
    }
  };
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onClose={() => request && onDone()}>
      <h2 id="confirm-title">{request?.title}</h2>
      <p>{request?.body}</p>
      <div class="row">
        <button type="button" class="secondary" onClick={() => onDone()}>Cancel</button>
        <button type="button" class="danger" onClick={() => void go()}>{request?.action}</button>
      </div>
    </dialog>
  );
}
