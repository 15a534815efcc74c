// Readiness callbacks for a file descriptor through libuv (koffi.node.poll). The handle is kept
// referenced here: an unreferenced poll handle is collected and stops firing.
import koffi from 'koffi';

interface PollEvents { readable: boolean; writable: boolean; disconnect: boolean }

export class Readiness {
  private handle: ReturnType<typeof koffi.node.poll> | null;
  /** Last libuv error status reported (0 = none). */
  lastStatus = 0;

  constructor(fd: number, onReadable: () => void) {
    // koffi 3.3 calls back with (status, events), unlike its type declarations say.
    const cb = (status: number, ev: PollEvents): void => {
      if (status < 0) {
        this.lastStatus = status;
        return;
      }
      if (ev.readable) onReadable();
    };
    this.handle = koffi.node.poll(fd, { readable: true }, cb as unknown as (ev: PollEvents) => void);
  }

  close(): void {
    if (!this.handle) return;
    this.handle.stop();
    this.handle.close();
    this.handle = null;
  }
}
