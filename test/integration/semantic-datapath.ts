// netstack's datapath driven by the semantic table, for the lab harness (semantic-host.ts).
import type { SemanticTable } from '../../proxy/semantic-table.ts';

export function startSemanticDatapath(_cfg: Record<string, unknown>, _table: SemanticTable,
  _onRtt: (peer: number, ms: number) => void): { close: () => void } {
  throw new Error('the datapath harness is not wired yet');
}
