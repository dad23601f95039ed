// The studio's JSON API (docs/api.md): typed calls, the CSRF header, uploads with progress and
// one server-sent event stream of job changes shared by every screen.

export interface Account {
  id: string;
  email: string;
  display_name: string;
}
export interface Subject {
  id: string;
  name: string;
  trigger_word: string;
  class_word?: string; // woman, man, girl, boy or person: in prompts and training captions
  status: string;
  // The next step, from the photos' verdicts and the LoRA versions.
  stage?: "needs_photos" | "ready_to_train" | "training" | "trained" | "ready_to_shoot";
  // "trained": a double trained on their photos; "instant": their best photo through IP-Adapter.
  identity_source?: "trained" | "instant";
  photos?: number;
  accepted_photos?: number;
  cover_photo_id?: string | null;
  has_face_profile: boolean;
  created_at: number;
}
export interface PhotoReason {
  code: string;
  message: string;
  rejects: boolean;
  detail?: string;
  figures?: Record<string, number>;
}
export interface Photo {
  id: string;
  subject_id: string;
  size: number;
  verdict: "accepted" | "rejected" | "pending";
  reasons: PhotoReason[] | null;
  has_crop: boolean;
  created_at: number;
}
export interface Readiness {
  level: "needs_photos" | "ready" | "ideal";
  total: number;
  accepted: number;
  rejected: number;
  photos_needed: number;
  minimum_photos: number; // the fewest good photos training accepts (the server's rule)
  photos_to_ideal: number;
  headline: string;
  hints: string[];
  hint_codes?: string[];
  plenty_photos?: number;
  goal?: "train" | "instant"; // an instant subject needs one good photo and no training
  rejection_groups?: { code: string; title: string; photos: number; advice: string }[];
}
export interface Job {
  id: string;
  kind: string;
  status: "queued" | "running" | "succeeded" | "dead" | "cancelled";
  subject_id: string | null;
  progress: number;
  progress_message: string;
  result: Record<string, unknown> | null;
  error: string | null;
  created_at: number;
  updated_at: number;
  finished_at?: number | null;
}
export interface LoraVersion {
  id: string;
  subject_id: string;
  status: string;
  validation_likeness: number | null;
  validation_faces?: "found" | "none" | null;
  settings?: { steps?: number; rank?: number; sample_every?: number };
  created_at: number;
}
// A sample image the training made after `step` (GET /api/loras/{id}/samples).
export interface TrainingSample {
  step: number;
  index: number;
  png_url: string;
  created_at: number;
}
export interface TrainingSamples {
  status: string;
  steps: number | null;
  sample_every: number;
  samples: TrainingSample[];
}
export interface StylePack {
  id: string;
  name: string;
  name_zh: string;
  description: string;
  description_zh: string;
  tags: string[];
  // Example images made with the default model (POST /api/style-samples makes missing ones).
  samples?: { seed: number; url: string }[];
  samples_status?: "ready" | "missing" | "making" | "failed" | "not_installed" | "other_family";
}
export interface Sampler {
  name: string;
  display_name: string;
  karras: boolean;
}
export interface ShootSpeed {
  id: "exact" | "fast";
  available: boolean;
  adapter?: string | null;
}
export interface StyleList {
  styles: StylePack[];
  samplers?: Sampler[];
  speeds?: ShootSpeed[];
}
export interface Shoot {
  id: string;
  subject_id: string;
  styles: string[];
  image_count: number;
  images_done?: number;
  progress?: number;
  jobs?: Record<"queued" | "running" | "succeeded" | "dead" | "cancelled", number>;
  status: string;
  // A new version of one portrait from the gallery: upscaled, face fixed or repainted.
  made_from?: { edit: "upscale" | "face_fix" | "inpaint"; image_id: string; style: string };
  created_at: number;
}
export interface Recipe {
  style?: string;
  prompt?: string;
  negative_prompt?: string;
  seed?: number;
  steps?: number;
  guidance?: number;
  sampler?: string;
  width?: number;
  height?: number;
  model?: { name?: string; hash?: string };
  subject?: { trigger_word?: string; class_word?: string };
  karras?: boolean;
  hires?: { scale: number; strength: number };
  face_detail?: { strength: number };
  inpaint?: unknown;
  [key: string]: unknown;
}
export interface Image {
  id: string;
  shoot_id: string;
  recipe: Recipe;
  likeness: number | null;
  likeness_label: string | null;
  quality: number | null;
  favourite: boolean;
  png_url: string;
  created_at: number;
}
export interface Model {
  id: string;
  name: string;
  kind?: "checkpoint" | "ip_adapter" | "image_encoder";
  path: string;
  family: string;
  prediction: string | null;
  variant?: string; // an IP-Adapter's: base, plus, plus-face, full-face
  hidden_size?: number; // an image encoder's width
  builtin: boolean;
  default: boolean;
}
export interface StorageKind {
  count: number;
  bytes: number;
}
export interface Storage {
  photos: StorageKind;
  images: StorageKind;
  loras: StorageKind;
  total_bytes: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly refused: RefusedFile[] = [], // an upload whose every file was refused
  ) {
    super(message);
  }
}

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)doppel_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

let onUnauthorized: () => void = () => {};
// Called when any request answers 401 (the session ended): the app shows the sign-in page.
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

async function errorFrom(response: Response): Promise<ApiError> {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error?.code ?? "error", body.error?.message ?? "");
  } catch {
    return new ApiError(response.status, "error", `${response.status} ${response.statusText}`);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "offline", "");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !path.startsWith("/api/sessions")) onUnauthorized();
    throw error;
  }
  return (await response.json()) as T;
}

export interface RefusedFile {
  file: string;
  code: string;
  message: string;
}
export interface UploadResult {
  added: string[];
  refused?: RefusedFile[];
  photos: Photo[];
  readiness: Readiness;
}

// Multipart upload with byte progress (fetch cannot report upload progress).
export function uploadPhotos(
  subjectId: string,
  files: File[],
  onProgress: (fraction: number) => void,
): Promise<UploadResult> {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("photos", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", `/api/subjects/${subjectId}/photos`);
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    request.onerror = () => reject(new ApiError(0, "offline", ""));
    request.onload = () => {
      let body: { error?: { code?: string; message?: string } } & Partial<UploadResult> = {};
      try {
        body = JSON.parse(request.responseText);
      } catch {
        /* the status tells the rest */
      }
      if (request.status >= 200 && request.status < 300) {
        resolve(body as UploadResult);
      } else {
        if (request.status === 401) onUnauthorized();
        reject(
          new ApiError(
            request.status,
            body.error?.code ?? "error",
            body.error?.message ?? "",
            body.refused ?? [],
          ),
        );
      }
    };
    request.send(form);
  });
}

type JobListener = (job: Job) => void;
const jobListeners = new Set<JobListener>();
let jobStream: EventSource | null = null;

// Every change of the account's jobs, from GET /api/events (one stream for the whole page;
// the browser reconnects it by itself). Returns the function that stops listening.
export function onJob(listener: JobListener): () => void {
  jobListeners.add(listener);
  if (!jobStream) {
    jobStream = new EventSource("/api/events");
    jobStream.addEventListener("job", (event) => {
      const job = JSON.parse((event as MessageEvent).data) as Job;
      for (const each of [...jobListeners]) each(job);
    });
  }
  return () => jobListeners.delete(listener);
}

export function closeJobStream(): void {
  jobStream?.close();
  jobStream = null;
}

export function isFinished(job: Job): boolean {
  return job.status === "succeeded" || job.status === "dead" || job.status === "cancelled";
}
