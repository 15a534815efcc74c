// An image archive refused for what it is (not a tar, not an image, no usable name): the user's input,
// answered 422 with this message. Apart from image-import.ts so the worker API can tell it without
// loading containerd's client.
export class ImportError extends Error {}
