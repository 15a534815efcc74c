// Promoted to the product (orchestrator/deployment/proc.ts, used by `canopy up`); re-exported so the
// lab keeps its imports.
export * from '../../orchestrator/deployment/proc.ts';
