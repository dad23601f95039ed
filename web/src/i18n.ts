// UI text in English and Chinese; the browser's preferred language picks (zh* -> Chinese).

const en = {
  appName: "doppel",
  tagline: "Your private portrait studio",
  skipToContent: "Skip to content",
  navSubjects: "People",
  navSettings: "Settings",
  signOut: "Sign out",
  loading: "Loading…",
  retry: "Try again",
  cancel: "Cancel",
  close: "Close",
  delete: "Delete",
  save: "Save",
  errorGeneric: "Something went wrong: {message}",
  errorOffline: "The studio cannot be reached. Is doppel still running?",
  backTo: "← {name}",

  setupTitle: "Welcome to doppel",
  setupIntro: "Create the first account. Everything stays on this computer.",
  setupNoToken:
    "This set-up link has no token. Use the link doppel printed when it started (…/setup?token=…).",
  setupDone: "The studio is already set up. Sign in instead.",
  email: "Email",
  password: "Password",
  passwordHint: "At least 8 characters.",
  displayName: "Your name",
  createAccount: "Create account",
  signInTitle: "Sign in",
  signIn: "Sign in",
  signingIn: "Signing in…",

  subjectsTitle: "People",
  subjectsIntro: "Each person gets their own double, trained only on their photos.",
  subjectsEmpty: "No one here yet. Add the first person to begin.",
  newSubjectName: "Name of the person",
  newSubjectPlaceholder: "e.g. Alice",
  addSubject: "Add person",
  statusNew: "Needs photos",
  statusTrained: "Double ready",
  statusTraining: "Training",
  open: "Open",

  photosTitle: "1 · Photos",
  photosIntro:
    "Add 5 to 20 photos of just this person: different days, angles and light, face clearly visible.",
  dropHere: "Drop photos here",
  orChoose: "or choose files",
  uploading: "Uploading {done} of {total}…",
  checkingFaces: "Checking faces…",
  photoAccepted: "Good photo",
  photoPending: "Not checked",
  deletePhoto: "Delete this photo",
  photoAlt: "Photo {index}",
  readinessNeed: "Add {count} more good photos to start training (at least 5 are needed).",
  readinessNeedOne: "Add 1 more good photo to start training (at least 5 are needed).",
  readinessReady: "Ready to train with {count} photos. {more} more would improve the likeness.",
  readinessIdeal: "Ready to train with {count} photos.",
  photoCounts: "{accepted} accepted · {rejected} not usable",

  trainTitle: "2 · Train my double",
  trainIntro: "Learns this person's face on this computer. Nothing is uploaded anywhere.",
  trainButton: "Train my double",
  trainAgain: "Train again",
  trainNeedsPhotos: "Needs at least 5 good photos first.",
  trainQueued: "Waiting for a free worker…",
  trainRunning: "Training… {percent}%",
  eta: "about {time} left",
  trainDone: "Double trained.",
  trainFailed: "Training failed: {message}",
  validationLikeness: "Likeness in test portraits: {score}/100",
  validationUnknown:
    "The likeness of the test portraits could not be measured (no face found in them).",

  shootTitle: "3 · Shoot portraits",
  shootIntro: "Pick one or more styles. Every portrait is ranked by how much it looks like {name}.",
  shootNeedsTraining: "Train the double first.",
  shootAction: "Shoot portraits",
  chooseStyles: "Choose styles",
  perStyle: "Portraits per style",
  startShoot: "Shoot {count} portraits",
  startShootNone: "Choose at least one style",
  sample: "Sample of {style}",
  noSample: "No sample yet",
  selected: "Selected",
  gallery: "Gallery",
  openGallery: "Open the gallery",

  shootProgress: "{done} of {total} portraits done",
  beingMade: "Being made…",
  shootFinished: "All {total} portraits done",
  shootIncomplete: "{done} of {total} done; some could not be made",
  galleryTitle: "Gallery of {name}",
  galleryEmpty: "No portraits yet.",
  galleryIntro: "Best likeness first. Click a portrait to see it full size.",
  downloadZip: "Download all (zip)",
  download: "Download",
  favourite: "Favourite",
  unfavourite: "Remove from favourites",
  moreLikeThis: "More like this",
  deleteImage: "Delete this portrait",
  likenessBadge: "{score} · {label}",
  likenessUnknown: "No face found",
  labelSame: "looks like them",
  labelLikely: "likely them",
  labelUncertain: "uncertain",
  labelDifferent: "doesn't look like them",
  recipe: "Recipe",
  recipePrompt: "Prompt",
  recipeNegative: "Negative prompt",
  recipeSettings: "Settings",
  recipeModel: "Model",
  recipeStyle: "Style",
  variationsQueued: "Shooting 4 more like this…",
  imageAlt: "Portrait in the style {style}, likeness {score}",
  shoots: "Shoots",
  shootOf: "{styles} · {count} portraits",

  settingsTitle: "Settings",
  modelsTitle: "Models",
  modelsIntro:
    "The Stable Diffusion checkpoint new trainings and shoots use. Add a .safetensors file or a diffusers folder already on this computer.",
  modelPath: "Path to a model on this computer",
  modelPathPlaceholder: "/home/me/models/v1-5-pruned-emaonly.safetensors",
  addModel: "Add model",
  makeDefault: "Use by default",
  defaultModel: "Default",
  builtinModel: "built in, for trying the studio out",
  storageTitle: "Storage",
  storagePhotos: "Photos",
  storageImages: "Portraits",
  storageLoras: "Trained doubles",
  storageTotal: "Total",
  items: "{count} files",
  oneItem: "1 file",
  privacyTitle: "Privacy",
  privacyIntro: "Your photos and doubles never leave this computer. Delete them whenever you like.",
  deleteSubject: "Delete {name} and everything made from it",
  deleteSubjectConfirm:
    "Delete {name}? Their photos, trained double and every portrait of them are removed for good.",
  deleteAccount: "Delete my account",
  deleteAccountConfirm:
    "Delete your account and everything in it? Type your password to confirm. This cannot be undone.",
  deleted: "Deleted.",
  noSubjects: "No people to delete.",

  reason_no_face: "no face found",
  reason_multiple_faces: "two or more faces",
  reason_extra_faces: "other faces in the background",
  reason_face_too_small: "face too small",
  reason_blurred: "too blurry",
  reason_extreme_pose: "face turned too far",
  reason_too_dark: "too dark",
  reason_overexposed: "too bright",
  reason_eyes_closed: "eyes closed",
  reason_occluded: "face covered",
  reason_face_near_edge: "face at the edge",
  reason_low_quality: "low quality",
  reason_unreadable: "cannot be read",
  reason_duplicate: "same photo twice",
  reason_different_person: "looks like a different person",
};

export type TextKey = keyof typeof en;

const zh: Record<TextKey, string> = {
  appName: "doppel",
  tagline: "你的私人写真馆",
  skipToContent: "跳到内容",
  navSubjects: "人物",
  navSettings: "设置",
  signOut: "退出登录",
  loading: "加载中…",
  retry: "重试",
  cancel: "取消",
  close: "关闭",
  delete: "删除",
  save: "保存",
  errorGeneric: "出错了：{message}",
  errorOffline: "无法连接写真馆。doppel 还在运行吗？",
  backTo: "← {name}",

  setupTitle: "欢迎使用 doppel",
  setupIntro: "创建第一个账号。所有数据都留在这台电脑上。",
  setupNoToken: "这个设置链接缺少令牌。请使用 doppel 启动时打印的链接（…/setup?token=…）。",
  setupDone: "写真馆已经设置好了，请直接登录。",
  email: "邮箱",
  password: "密码",
  passwordHint: "至少 8 个字符。",
  displayName: "你的名字",
  createAccount: "创建账号",
  signInTitle: "登录",
  signIn: "登录",
  signingIn: "正在登录…",

  subjectsTitle: "人物",
  subjectsIntro: "每个人都有自己的数字分身，只用他们自己的照片训练。",
  subjectsEmpty: "这里还没有人物。添加第一个人开始吧。",
  newSubjectName: "人物名字",
  newSubjectPlaceholder: "例如：小美",
  addSubject: "添加人物",
  statusNew: "需要照片",
  statusTrained: "分身已就绪",
  statusTraining: "训练中",
  open: "打开",

  photosTitle: "1 · 照片",
  photosIntro: "添加 5 到 20 张只有此人的照片：不同的日子、角度和光线，脸部清晰可见。",
  dropHere: "把照片拖到这里",
  orChoose: "或选择文件",
  uploading: "正在上传 {done}/{total}…",
  checkingFaces: "正在检查人脸…",
  photoAccepted: "合格",
  photoPending: "未检查",
  deletePhoto: "删除这张照片",
  photoAlt: "照片 {index}",
  readinessNeed: "再添加 {count} 张合格照片即可开始训练（至少需要 5 张）。",
  readinessNeedOne: "再添加 1 张合格照片即可开始训练（至少需要 5 张）。",
  readinessReady: "已可用 {count} 张照片训练。再加 {more} 张会更像。",
  readinessIdeal: "已可用 {count} 张照片训练。",
  photoCounts: "{accepted} 张合格 · {rejected} 张不可用",

  trainTitle: "2 · 训练我的分身",
  trainIntro: "在这台电脑上学习此人的样貌，不会上传到任何地方。",
  trainButton: "训练我的分身",
  trainAgain: "重新训练",
  trainNeedsPhotos: "需要先有至少 5 张合格照片。",
  trainQueued: "正在等待空闲的工作进程…",
  trainRunning: "训练中… {percent}%",
  eta: "大约还需 {time}",
  trainDone: "分身训练完成。",
  trainFailed: "训练失败：{message}",
  validationLikeness: "测试写真相似度：{score}/100",
  validationUnknown: "无法测量测试写真的相似度（其中没有找到人脸）。",

  shootTitle: "3 · 拍摄写真",
  shootIntro: "选择一种或多种风格。每张写真都会按与{name}的相似度排序。",
  shootNeedsTraining: "请先训练分身。",
  shootAction: "拍摄写真",
  chooseStyles: "选择风格",
  perStyle: "每种风格的张数",
  startShoot: "拍摄 {count} 张写真",
  startShootNone: "请至少选择一种风格",
  sample: "{style} 示例",
  noSample: "暂无示例",
  selected: "已选",
  gallery: "相册",
  openGallery: "打开相册",

  shootProgress: "已完成 {done}/{total} 张",
  beingMade: "正在生成…",
  shootFinished: "{total} 张全部完成",
  shootIncomplete: "完成 {done}/{total} 张；部分未能生成",
  galleryTitle: "{name} 的相册",
  galleryEmpty: "还没有写真。",
  galleryIntro: "最像的排在前面。点击写真查看大图。",
  downloadZip: "全部下载（zip）",
  download: "下载",
  favourite: "收藏",
  unfavourite: "取消收藏",
  moreLikeThis: "再来几张类似的",
  deleteImage: "删除这张写真",
  likenessBadge: "{score} · {label}",
  likenessUnknown: "未找到人脸",
  labelSame: "很像本人",
  labelLikely: "可能是本人",
  labelUncertain: "不确定",
  labelDifferent: "不像本人",
  recipe: "配方",
  recipePrompt: "提示词",
  recipeNegative: "反向提示词",
  recipeSettings: "参数",
  recipeModel: "模型",
  recipeStyle: "风格",
  variationsQueued: "正在再拍 4 张类似的…",
  imageAlt: "{style}风格写真，相似度 {score}",
  shoots: "拍摄记录",
  shootOf: "{styles} · {count} 张",

  settingsTitle: "设置",
  modelsTitle: "模型",
  modelsIntro:
    "新的训练和拍摄所用的 Stable Diffusion 模型。可添加本机上的 .safetensors 文件或 diffusers 文件夹。",
  modelPath: "本机上模型的路径",
  modelPathPlaceholder: "/home/me/models/v1-5-pruned-emaonly.safetensors",
  addModel: "添加模型",
  makeDefault: "设为默认",
  defaultModel: "默认",
  builtinModel: "内置，用于试用",
  storageTitle: "存储",
  storagePhotos: "照片",
  storageImages: "写真",
  storageLoras: "训练好的分身",
  storageTotal: "合计",
  items: "{count} 个文件",
  oneItem: "1 个文件",
  privacyTitle: "隐私",
  privacyIntro: "你的照片和分身从不离开这台电脑，随时可以删除。",
  deleteSubject: "删除{name}及其所有相关内容",
  deleteSubjectConfirm: "删除{name}？其照片、训练好的分身和所有写真都将被永久删除。",
  deleteAccount: "删除我的账号",
  deleteAccountConfirm: "删除你的账号及其中所有内容？请输入密码确认。此操作无法撤销。",
  deleted: "已删除。",
  noSubjects: "没有可删除的人物。",

  reason_no_face: "没有找到人脸",
  reason_multiple_faces: "有两张或更多人脸",
  reason_extra_faces: "背景中有其他人脸",
  reason_face_too_small: "脸太小",
  reason_blurred: "太模糊",
  reason_extreme_pose: "脸转得太偏",
  reason_too_dark: "太暗",
  reason_overexposed: "太亮",
  reason_eyes_closed: "闭着眼睛",
  reason_occluded: "脸被遮挡",
  reason_face_near_edge: "脸在画面边缘",
  reason_low_quality: "画质较差",
  reason_unreadable: "无法读取",
  reason_duplicate: "重复的照片",
  reason_different_person: "看起来像另一个人",
};

export type Language = "en" | "zh";

function preferredLanguage(): Language {
  const languages = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const language of languages) {
    const code = (language || "").toLowerCase();
    if (code.startsWith("zh")) return "zh";
    if (code.startsWith("en")) return "en";
  }
  return "en";
}

export const language: Language = preferredLanguage();
const table: Record<TextKey, string> = language === "zh" ? zh : en;

// t("uploading", {done: 1, total: 3}) -> "Uploading 1 of 3…"
export function t(key: TextKey, parameters: Record<string, string | number> = {}): string {
  return table[key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in parameters ? String(parameters[name]) : whole,
  );
}

// The API's error codes in Chinese (the server's messages are English); English shows the
// server's message, which says what to do.
const chineseErrors: Record<string, string> = {
  unauthorized: "邮箱或密码不正确，或登录已过期。",
  too_many_requests: "尝试次数过多，请稍后再试。",
  not_found: "找不到这项内容，它可能已被删除。",
  too_large: "文件太大或照片太多，请分几次上传。",
  unsupported_media_type: "这不是图片文件。请使用 PNG、JPEG 或 WebP 照片。",
  not_ready: "还不能开始：合格的照片不够。",
  csrf: "页面已过期，请刷新后再试。",
  conflict: "这项内容已经存在或正在使用中。",
};

export function localizedError(code: string): string | null {
  return language === "zh" ? (chineseErrors[code] ?? null) : null;
}

// A photo-check reason code in plain words; unknown codes fall back to the server's message.
export function reasonText(code: string, message: string): string {
  const key = `reason_${code}` as TextKey;
  return key in table ? table[key] : message;
}

export function likenessLabelText(label: string | null): string {
  switch (label) {
    case "same person":
      return t("labelSame");
    case "likely the same person":
      return t("labelLikely");
    case "uncertain":
      return t("labelUncertain");
    case "different person":
      return t("labelDifferent");
    default:
      return t("likenessUnknown");
  }
}

// A style pack's name or description in the UI language.
export function localized(english: string, chinese: string | undefined): string {
  return language === "zh" && chinese ? chinese : english;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(1, Math.round(seconds));
  if (language === "zh") {
    if (s < 60) return `${s} 秒`;
    if (s < 3600) return `${Math.round(s / 60)} 分钟`;
    return `${(s / 3600).toFixed(1)} 小时`;
  }
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
