// Promoted to the product (orchestrator/deployment/iproute.ts, used by `canopy up`); re-exported so
// the lab keeps its imports.
export * from '../orchestrator/deployment/iproute.ts';
