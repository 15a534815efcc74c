// Where each of root's two user-facing surfaces lives (SPEC §7). Canopy's own API is versioned under
// one base path, so Oakestra's paths (/api/application, …) stay free for Oakestra's wire format.
export const API_V1 = '/api/v1';
