// Defaults the worker's flags show, kept apart from the container runtime so that reading them does not
// load containerd's gRPC client (a worker without containerd never loads it).

/** The image cache limit: room for a few dozen typical service images, well below a small disk. */
export const DEFAULT_IMAGE_CACHE_MB = 10_240;
