// Locations in descriptors and cluster registrations: "lat,long" or "lat,long,radius_km", plus the
// great-circle distance that `geo` constraints are checked with, and the distance-to-RTT bound that
// `latency` constraints are checked with (by root per cluster, by a cluster per worker).

export interface Location {
  lat: number;
  long: number;
  /** Radius in km of the area a cluster covers (0 for a point). */
  radius: number;
}

const NUMBER = /^\s*-?[0-9]{1,3}(\.[0-9]+)?\s*$/;

/** Parses "lat,long[,radius]"; null when the text is not coordinates (e.g. a place name). */
export function parseLocation(text: string, allowRadius = true): Location | null {
  const parts = text.split(',');
  if (parts.length < 2 || parts.length > (allowRadius ? 3 : 2)) return null;
  if (!parts.slice(0, 2).every((p) => NUMBER.test(p))) return null;
  const lat = Number(parts[0]);
  const long = Number(parts[1]);
  const radius = parts.length === 3 ? Number(parts[2]) : 0;
  if (lat < -90 || lat > 90 || long < -180 || long > 180) return null;
  if (!Number.isFinite(radius) || radius < 0 || (parts[2] !== undefined && parts[2].trim() === '')) return null;
  return { lat, long, radius };
}

const EARTH_RADIUS_KM = 6371;

/** Great-circle distance in km (haversine). */
export function distanceKm(a: { lat: number; long: number }, b: { lat: number; long: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLong = (b.long - a.long) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLong / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Signals in fibre cover about 200 km per ms; a round trip can never beat this. */
export const KM_PER_MS_RTT = 100;

/** The lowest RTT in ms that a distance in km allows: a `latency` threshold below it cannot be met. */
export function minRttMs(km: number): number {
  return km / KM_PER_MS_RTT;
}
