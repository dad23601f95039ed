// UI text in English and Chinese: the language switch (remembered) or else the browser's
// preferred language picks; every key has both texts (scripts/check-i18n.mjs checks them).

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
    "This page needs the set-up link doppel printed when it started (…/setup?token=…). Open that link to create the first account.",
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
  choosePhotos: "Choose photos",
  uploading: "Uploading {done} of {total}…",
  checkingFaces: "Checking faces…",
  photoAccepted: "Good photo",
  photoPending: "Not checked",
  deletePhoto: "Delete this photo",
  photoAlt: "Photo {index}",
  readinessNeed: "Add {count} more good photos to start training (at least {minimum} are needed).",
  readinessNeedOne: "Add 1 more good photo to start training (at least {minimum} are needed).",
  readinessReady:
    "Ready to train with {count} good photos. {more} more would improve the likeness.",
  readinessIdeal: "Ready to train with {count} good photos.",
  photoCounts: "{accepted} accepted · {rejected} not usable",

  trainTitle: "2 · Train my double",
  trainIntro: "Learns this person's face on this computer. Nothing is uploaded anywhere.",
  trainButton: "Train my double",
  trainAgain: "Train again",
  trainStartAbove: "Start it with “Train my double” in the next step above.",
  downloadLora: "Download the double (.safetensors for AUTOMATIC1111 and ComfyUI)",
  advanced: "Advanced settings",
  advancedTrainIntro:
    "For those who know DreamBooth-LoRA training; the defaults suit most people. Used by the next training.",
  advancedShootIntro:
    "For those who want to repeat a shoot exactly; the defaults suit most people.",
  trainSteps: "Training steps",
  trainRank: "LoRA rank",
  // Sample images during training, a refused value's reason, new versions of a portrait.
  trainSampleEvery: "A sample image every … steps",
  trainSampleEveryDefault: "a quarter of the steps; 0: none",
  samplesSoFar: "Samples so far",
  samplesMade: "Samples made during training",
  samplesFirstAt: "The first sample comes after step {step}.",
  sampleStep: "Step {step}",
  sampleAlt: "Sample after training step {step}",
  errorWithReason: "{lead} {reason}",
  errorRefused: "The studio refused this.",
  madeUpscaled: "Upscaled from the {style} portrait",
  madeFaceFixed: "Face fixed, from the {style} portrait",
  madeRepainted: "Repainted, from the {style} portrait",
  classWord: "The person is a",
  class_person: "person",
  class_woman: "woman",
  class_man: "man",
  class_girl: "girl",
  class_boy: "boy",
  defaultChoice: "default",
  shootSeed: "Seed (empty: new portraits every time)",
  trainEstimate: "The last training on this computer took about {time}.",
  shootEstimate: "About {time} on this computer, measured on its earlier portraits.",
  trainNeedsPhotos: "Needs at least {minimum} good photos first.",
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
  perStyle: "Portraits per style or template",
  shootSpeed: "Speed",
  shootSpeedExact: "Best quality",
  shootSpeedFast: "Fast: about 5× quicker, a little less detail",
  startShoot: "Shoot {count} portraits",
  startShootNone: "Choose at least one style or template",
  templatesTitle: "Templates: your face in a finished picture",
  templatesIntro:
    "A template is a picture with a scene, clothes and light already set. Only the face is repainted, so the portrait looks like a planned photo shoot.",
  templatesReady: "Ready-made templates",
  templatesMine: "Your pictures",
  templatesMineEmpty: "None yet. Use one of your own pictures below.",
  templatePictureOf: "Template picture: {name}",
  templateDrawnLater: "The studio draws this picture the first time it is used.",
  templateNoPicture: "No picture to show",
  templateNamed: "Template: {name}",
  templateGone: "A deleted template",
  templateFaceOne: "One face is replaced.",
  templateFacesMany: "{count} faces are replaced.",
  templateDelete: "Delete",
  templateDeleteConfirm: "Delete the template “{name}”? Portraits made with it stay.",
  templateUseMine: "Use my own picture as a template",
  templateUseMineIntro:
    "A photo of a place, an outfit or a scene you like, with a clearly visible face. The face is replaced; everything else stays.",
  templateChoosePicture: "Picture (PNG, JPEG or WebP)",
  templateChecking: "Looking for faces…",
  templateNoFace:
    "No face was found in this picture. Choose one where a face is clearly visible, facing the camera.",
  templateOneFaceFound: "One face found.",
  templateFacesFound: "{count} faces found, numbered from the left.",
  templatePreviewHint: "The bright area is what will be repainted; the rest stays as it is.",
  templatePreviewAlt: "Preview: the area that will be repainted",
  templateWhichFace: "Which face becomes this person",
  templateFaceAll: "Every face, one person each (a couple or a group)",
  templatePeople: "Who goes into each face, from the left:",
  templateFaceNumber: "Face {n} (from the left)",
  templateName: "Name of the template",
  templateNameNeeded: "Give the template a name.",
  templateSave: "Save as template",
  templateSaved: "“{name}” is saved and chosen for this shoot.",
  sample: "Sample of {style}",
  noSample: "No sample yet",
  samplesMaking: "Making examples of this style…",
  samplesFailed: "No examples: making them failed.",
  samplesOtherFamily: "Not for this model",
  samplesNotInstalled: "Needs files the server does not have",
  shootSampler: "Sampler",
  styleChoice: "the style's",
  shootSteps: "Steps",
  shootCfg: "CFG scale (how closely it follows the prompt)",
  shootWidth: "Width",
  shootHeight: "Height",
  shootPromptExtra: "Add to the style's prompt",
  shootPromptExtraPlaceholder: "e.g. red scarf, smiling",
  shootLoraWeight: "Likeness strength (LoRA weight)",
  upscale: "Upscale 2×",
  upscaleQueued: "Making a larger version… it appears in the gallery.",
  fixFace: "Fix the face",
  fixFaceQueued: "Fixing the face… the new version appears in the gallery.",
  inpaint: "Paint over an area",
  inpaintHelp: "Brush over the part to paint again, then press “Paint again”.",
  brushSize: "Brush size",
  clearBrush: "Clear",
  inpaintPrompt: "What to paint there (optional)",
  inpaintGo: "Paint again",
  inpaintEmpty: "Brush over an area first.",
  inpaintQueued: "Painting the area again… the new version appears in the gallery.",
  recipeUpscaled: "upscaled {scale}×",
  recipeFaceFixed: "face fixed",
  recipePainted: "area painted again",
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
  listSeparator: ", ",
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
  identityTitle: "How should doppel learn their face?",
  identityInstant: "Instant portraits from one photo",
  identityInstantDetail: "One good photo, portraits in minutes. The likeness is less exact.",
  identityTrained: "Train a double",
  identityTrainedDetail:
    "10 or more photos and about 30 minutes of training, for the closest likeness.",
  statusReadyToShoot: "Ready to shoot",
  readinessInstantNeed: "Add one good photo of their face: the portraits are made from it.",
  readinessInstantReady: "Ready to shoot: the portraits are made from their best photo.",
  nextShootInstant:
    "Portraits of {name} are made from their best photo, with no training: shoot them now.",
  instantTrainNote:
    "{name} is shot from one photo, without training. For a closer likeness, add 10 or more photos and train a double instead (about 30 minutes).",
  switchToTrained: "Train a double instead",
  photosIntroInstant:
    "One clear photo of just this person, face visible, is enough; if you add more, the best one is used.",
  switchToInstant: "Use instant portraits from one photo instead",
  modelKind: "Kind",
  modelKindCheckpoint: "Checkpoint (Stable Diffusion model)",
  modelKindIpAdapter: "IP-Adapter (portraits from one photo)",
  modelKindImageEncoder: "Image encoder (read by the IP-Adapter)",
  modelsCheckpoints: "Checkpoints",
  modelsIpAdapters: "IP-Adapters",
  modelsImageEncoders: "Image encoders",
  modelsNone: "None added yet.",
  modelsIdentityIntro:
    "Instant portraits need an IP-Adapter plus-face (ip-adapter-plus-face_sd15.safetensors) and its image encoder (the image_encoder folder), both from h94/IP-Adapter.",
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
  statusReady: "Ready to train",
  mainNavigation: "Main",
  languageSwitch: "中文",
  languageSwitchLabel: "切换到中文 (Switch to Chinese)",
  photoNotes: "Good photo, with a note",
  photoDetails: "Details: {details}",
  hintRejected: "{count} photos were not accepted ({title}). {advice}",
  hintRejectedOne: "1 photo was not accepted ({title}). {advice}",
  hintTurnHead:
    "All your photos face the camera straight on. Add two or three with your head turned a little to the side, so portraits from an angle look like you too.",
  hintPlenty:
    "{count} good photos is more than needed: {plenty} varied ones are plenty, and more make training slower without improving the likeness.",
  uploadRefused: "Not added:",
  uploadRefusedFile: "{file}: {reason}",
  refusedNotImage: "not a PNG, JPEG or WebP photo",
  refusedTooLarge: "too large (split it or use a smaller copy)",
  refusedBroken: "damaged or cut off; copy the photo again",
  nextStepTitle: "Next step",
  nextAddPhotos: "Add photos of {name} below to start.",
  nextTrain: "{name} has enough good photos: train the double.",
  nextTraining: "Training the double of {name}…",
  nextShoot: "The double of {name} is ready: shoot portraits.",
  cancelTraining: "Cancel training",
  trainCancelled: "Training was cancelled.",
  validationNoFace: "The likeness could not be measured: no face was found in the test portraits.",
  cancelShoot: "Cancel the rest",
  shootCancelled: "Cancelled: {done} of {total} portraits made",
  shootCancelling: "Cancelling…",
  likenessNotMeasured: "Likeness not measured",
  imageAltNoFace: "Portrait in the style {style}, no face found",
  recipeSteps: "{count} steps",
  recipeSeed: "seed {seed}",
  coverAlt: "Photo of {name}",
  advice_no_face:
    "No face was found. Use a photo where the face is clearly visible and turned towards the camera.",
  advice_multiple_faces:
    "There is more than one person in this photo, so it is unclear who it is of. Use a photo of the person alone, or crop it to their face.",
  advice_extra_faces: "Smaller faces in the background were ignored; the largest face was used.",
  advice_face_too_small:
    "The face is too small in this photo. Use a closer or higher-resolution photo where the face fills more of the picture.",
  advice_blurred:
    "The face is blurred or out of focus. Use a sharp photo: hold the camera still, and avoid screenshots and small copies.",
  advice_extreme_pose:
    "The head is turned or tilted too far. Use a photo where the person faces the camera or is turned only slightly.",
  advice_too_dark: "The face is too dark. Use a photo taken in daylight or good indoor light.",
  advice_overexposed:
    "The face is too bright: flash or harsh light washed it out. Use a photo in softer light.",
  advice_eyes_closed: "The eyes look closed. Use a photo with the eyes open.",
  advice_occluded:
    "The mouth seems covered (a mask, a hand or an object). Use a photo with the whole face visible.",
  advice_face_near_edge:
    "The face is close to the photo's edge, so part of the portrait had to be filled in. A photo with more room around the face works better.",
  advice_low_quality:
    "The image quality is low (noise, compression or blur). A cleaner photo would train better.",
  advice_unreadable: "This file could not be read as a photo. Upload it again as a JPEG or PNG.",
  advice_duplicate:
    "This is the same photo as another one (or a copy, crop or edit of it). Each photo should be a different shot.",
  advice_different_person:
    "This face does not match the other photos; it seems to show someone else. Use only photos of the same person.",
  detail_multiple_faces: "{faces} faces of similar size",
  detail_extra_faces: "{faces} smaller faces ignored",
  detail_face_too_small: "face {value} pixels wide, at least {limit} needed",
  detail_blurred: "sharpness {value}, at least {limit} needed",
  detail_extreme_pose: "about {value}° from facing the camera, at most {limit}°",
  detail_too_dark: "brightness {value} of 255, at least {limit} needed",
  detail_overexposed: "brightness {value} of 255, {percent}% of the face pure white",
  detail_eyes_closed: "eye openness {value}, at least {limit} needed",
  detail_occluded: "mouth contrast {value}, at least {limit} needed",
  detail_face_near_edge: "{percent}% of the portrait filled in by mirroring",
  detail_low_quality: "BRISQUE {value}, above {limit}",
  detail_different_person:
    "distance {value} from the typical face of the other photos; the same person is usually below {limit}",
  navIdPhoto: "ID photo",
  idPhotoTitle: "ID photo",
  idPhotoIntro:
    "A photo of {name} for a passport, visa or ID card, cut to the document's exact size and checked against its rules.",
  idPhotoStepDocument: "1 · Document",
  idPhotoDocument: "Which document is it for?",
  idPhotoBackground: "Background colour",
  idPhotoSpecInfo: "Printed {size}; the file is {pixels} pixels at {dpi} dpi.",
  idPhotoStepSource: "2 · Photo",
  idPhotoSourceIntro:
    "Pick one of the good photos, upload another one, or let the studio take new ones.",
  idPhotoFromThis: "Use this photo",
  idPhotoUpload: "Upload a photo",
  idPhotoShoot: "Take new ID portraits",
  idPhotoShootHint:
    "New portraits are made facing the camera on a plain background; each one is checked like a photo.",
  idPhotoNoAccepted: "No good photo of this person yet: upload one, or add photos on their page.",
  idPhotoMaking: "Making the ID photo and checking it… (a few seconds)",
  idPhotoJobFailed: "The ID photo could not be made.",
  idPhotoMadePasses: "Done: the photo passes every rule.",
  idPhotoMadeFails: "Done, but the photo does not pass every rule. See why below.",
  idPhotoStepResults: "3 · Your ID photos",
  idPhotoNoneYet: "None yet. Pick a photo above.",
  idPhotoAlt: "ID photo for {document}",
  idPhotoPasses: "Passes every rule of the {document}.",
  idPhotoFails: "Does not pass: {count} rules not met.",
  idPhotoFailsOne: "Does not pass: 1 rule not met.",
  idPhotoUnmade: "No ID photo could be made from this picture: no single face was found in it.",
  idPhotoNoDownload: "Only photos that pass every rule can be downloaded. Try another photo.",
  idPhotoChecks: "The rules, one by one",
  downloadIdPhoto: "Download ID photo",
  downloadIdPhotoJpg: "JPEG",
  downloadSheet: "Print sheet (6-inch)",
  downloadSheetPdf: "Print sheet PDF",
  checkPassed: "OK",
  checkFailed: "not met",
  check_one_face: "One person",
  check_frontal: "Facing the camera",
  check_eyes_open: "Eyes open",
  check_head_height: "Head size",
  check_eye_line: "Eye height",
  check_head_top: "Space above the head",
  check_centred: "Centred",
  check_background_uniform: "Plain background",
  check_background_colour: "Background colour",
  check_even_lighting: "Even light on the face",
  check_sharpness: "Sharp",
  check_size: "Photo size",
  check_resolution: "Enough detail",
  check_source_framing: "Whole head in the photo",
  checkHint_one_face: "Use a photo with only this person in it.",
  checkHint_frontal: "Look straight into the camera, head level.",
  checkHint_eyes_open: "Use a photo with both eyes open.",
  checkHint_head_height: "The head must fill the photo as the document asks.",
  checkHint_eye_line: "The eyes must sit at the height the document asks.",
  checkHint_head_top: "Leave the space above the head the document asks for.",
  checkHint_centred: "The face must be in the middle.",
  checkHint_background_uniform: "Stand in front of a plain wall, without shadows.",
  checkHint_background_colour: "The background must be one of the document's colours.",
  checkHint_even_lighting: "Light the face evenly from the front, no shadow on one side.",
  checkHint_sharpness: "Use a sharper photo (not blurred or out of focus).",
  checkHint_size: "The photo must have the document's size.",
  checkHint_resolution: "The face is too small in this photo; use a closer or larger one.",
  checkHint_source_framing: "The top of the head is cut off; use a photo with the whole head.",
  colour_white: "White",
  colour_off_white: "Off-white",
  colour_light_grey: "Light grey",
  colour_cream: "Cream",
  colour_light_blue: "Light blue",
  colour_blue: "Blue",
  colour_red: "Red",
  sizeInches: "{width}×{height} in",
  sizeMillimetres: "{width}×{height} mm",
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
  setupNoToken:
    "这个页面需要 doppel 启动时打印的设置链接（…/setup?token=…）。请打开那个链接来创建第一个账号。",
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
  choosePhotos: "选择照片",
  uploading: "正在上传 {done}/{total}…",
  checkingFaces: "正在检查人脸…",
  photoAccepted: "照片可用",
  photoPending: "未检查",
  deletePhoto: "删除这张照片",
  photoAlt: "照片 {index}",
  readinessNeed: "还需要 {count} 张可用的照片才能开始训练（至少 {minimum} 张）。",
  readinessNeedOne: "还需要 1 张可用的照片才能开始训练（至少 {minimum} 张）。",
  readinessReady: "已有 {count} 张可用的照片，可以开始训练了。再加 {more} 张，分身会更像本人。",
  readinessIdeal: "已有 {count} 张可用的照片，可以开始训练了。",
  photoCounts: "{accepted} 张可用 · {rejected} 张不可用",

  trainTitle: "2 · 训练我的分身",
  trainIntro: "在这台电脑上学习此人的样貌，不会上传到任何地方。",
  trainButton: "训练我的分身",
  trainAgain: "重新训练",
  trainStartAbove: "点击上方“下一步”里的“训练我的分身”即可开始。",
  downloadLora: "下载分身（.safetensors 文件，可用于 AUTOMATIC1111 和 ComfyUI）",
  advanced: "高级设置",
  advancedTrainIntro: "给熟悉 DreamBooth-LoRA 训练的人用；默认值适合大多数人。用于下一次训练。",
  advancedShootIntro: "给想要完全重现一次拍摄的人用；默认值适合大多数人。",
  trainSteps: "训练步数",
  trainRank: "LoRA 秩",
  // Sample images during training, a refused value's reason, new versions of a portrait.
  trainSampleEvery: "每隔多少步生成一张样图",
  trainSampleEveryDefault: "默认为总步数的四分之一；0 为不生成",
  samplesSoFar: "目前的样图",
  samplesMade: "训练过程中生成的样图",
  samplesFirstAt: "第 {step} 步之后会生成第一张样图。",
  sampleStep: "第 {step} 步",
  sampleAlt: "训练第 {step} 步之后的样图",
  errorWithReason: "{lead}服务器的说明：{reason}",
  errorRefused: "写真馆没有接受这个请求。",
  madeUpscaled: "放大自一张{style}写真",
  madeFaceFixed: "修复脸部，来自一张{style}写真",
  madeRepainted: "局部重绘，来自一张{style}写真",
  classWord: "此人是",
  class_person: "人",
  class_woman: "女性",
  class_man: "男性",
  class_girl: "女孩",
  class_boy: "男孩",
  defaultChoice: "默认",
  shootSeed: "种子（留空则每次生成不同的写真）",
  trainEstimate: "上一次在这台电脑上训练用了大约 {time}。",
  shootEstimate: "按这台电脑之前生成写真的速度，大约需要 {time}。",
  trainNeedsPhotos: "需要先有至少 {minimum} 张可用的照片。",
  trainQueued: "正在等待空闲的工作进程…",
  trainRunning: "训练中… {percent}%",
  eta: "大约还需 {time}",
  trainDone: "分身训练完成。",
  trainFailed: "训练失败：{message}",
  validationLikeness: "测试写真相似度：{score}/100",
  validationUnknown: "无法测量测试写真的相似度（其中没有找到人脸）。",

  shootTitle: "3 · 拍摄写真",
  shootIntro: "选择一种或多种风格。每张写真都会按与{name}的相似程度排序。",
  shootNeedsTraining: "请先训练分身。",
  shootAction: "拍摄写真",
  chooseStyles: "选择风格",
  perStyle: "每种风格或模板的张数",
  shootSpeed: "速度",
  shootSpeedExact: "最佳画质",
  shootSpeedFast: "快速：约快 5 倍，细节稍少",
  startShoot: "拍摄 {count} 张写真",
  startShootNone: "请至少选择一种风格或模板",
  templatesTitle: "模板：把你的脸放进一张成片",
  templatesIntro:
    "模板是一张已经定好场景、服装和光线的照片。只重画脸部，写真就像一次精心安排的拍摄。",
  templatesReady: "现成的模板",
  templatesMine: "你的图片",
  templatesMineEmpty: "还没有。可以在下面用你自己的图片。",
  templatePictureOf: "模板图片：{name}",
  templateDrawnLater: "第一次使用时，写真馆会画出这张图片。",
  templateNoPicture: "没有可显示的图片",
  templateNamed: "模板：{name}",
  templateGone: "已删除的模板",
  templateFaceOne: "替换一张脸。",
  templateFacesMany: "替换 {count} 张脸。",
  templateDelete: "删除",
  templateDeleteConfirm: "删除模板“{name}”吗？用它拍的写真会保留。",
  templateUseMine: "用我自己的图片做模板",
  templateUseMineIntro:
    "一张你喜欢的地点、服装或场景的照片，脸要清晰可见。只替换脸部，其他都保持不变。",
  templateChoosePicture: "图片（PNG、JPEG 或 WebP）",
  templateChecking: "正在查找人脸…",
  templateNoFace: "这张图片里没有找到人脸。请选择一张脸部清晰、面向镜头的图片。",
  templateOneFaceFound: "找到一张脸。",
  templateFacesFound: "找到 {count} 张脸，从左往右编号。",
  templatePreviewHint: "亮的区域会被重画，其余部分保持原样。",
  templatePreviewAlt: "预览：将被重画的区域",
  templateWhichFace: "哪张脸换成这个人",
  templateFaceAll: "每张脸各换成一个人（情侣或合影）",
  templatePeople: "从左往右，每张脸换成谁：",
  templateFaceNumber: "第 {n} 张脸（从左数）",
  templateName: "模板名称",
  templateNameNeeded: "请给模板起个名字。",
  templateSave: "保存为模板",
  templateSaved: "“{name}”已保存，并已选入这次拍摄。",
  sample: "{style} 示例",
  noSample: "暂无示例",
  samplesMaking: "正在生成这个风格的示例…",
  samplesFailed: "没有示例：生成失败了。",
  samplesOtherFamily: "不适用于当前模型",
  samplesNotInstalled: "服务器缺少这个风格需要的文件",
  shootSampler: "采样器",
  styleChoice: "风格默认",
  shootSteps: "步数",
  shootCfg: "提示词相关性（CFG）",
  shootWidth: "宽度",
  shootHeight: "高度",
  shootPromptExtra: "追加到风格提示词",
  shootPromptExtraPlaceholder: "例如：红围巾，微笑",
  shootLoraWeight: "本人特征强度（LoRA 权重）",
  upscale: "放大 2 倍",
  upscaleQueued: "正在生成放大版…完成后会出现在相册里。",
  fixFace: "修复面部",
  fixFaceQueued: "正在修复面部…新版本会出现在相册里。",
  inpaint: "重画一块区域",
  inpaintHelp: "用画笔涂抹要重画的部分，然后点“重画”。",
  brushSize: "画笔大小",
  clearBrush: "清除",
  inpaintPrompt: "要在那里画什么（可选）",
  inpaintGo: "重画",
  inpaintEmpty: "请先涂抹一块区域。",
  inpaintQueued: "正在重画这块区域…新版本会出现在相册里。",
  recipeUpscaled: "放大 {scale} 倍",
  recipeFaceFixed: "已修复面部",
  recipePainted: "局部重画",
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
  listSeparator: "、",
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
  identityTitle: "doppel 该如何学习此人的样貌？",
  identityInstant: "一张照片，即刻写真",
  identityInstantDetail: "只需一张好照片，几分钟就出写真，但相似度没那么精确。",
  identityTrained: "训练数字分身",
  identityTrainedDetail: "需要 10 张以上照片和约 30 分钟训练，相似度最高。",
  statusReadyToShoot: "可以拍摄",
  readinessInstantNeed: "添加一张清晰的脸部照片：写真将以它为准。",
  readinessInstantReady: "可以拍摄了：写真以其最好的一张照片为准。",
  nextShootInstant: "{name}的写真直接用其最好的一张照片生成，无需训练：现在就拍摄吧。",
  instantTrainNote:
    "{name}的写真由一张照片生成，无需训练。想要更像，可以添加 10 张以上照片，改为训练数字分身（约 30 分钟）。",
  switchToTrained: "改为训练数字分身",
  photosIntroInstant: "一张只有此人、脸部清晰的照片就够了；如果添加多张，会使用最好的一张。",
  switchToInstant: "改用一张照片即刻写真",
  modelKind: "类型",
  modelKindCheckpoint: "底模（Stable Diffusion 模型）",
  modelKindIpAdapter: "IP-Adapter（一张照片出写真）",
  modelKindImageEncoder: "图像编码器（供 IP-Adapter 读图）",
  modelsCheckpoints: "底模",
  modelsIpAdapters: "图像提示适配器（IP-Adapter）",
  modelsImageEncoders: "图像编码器",
  modelsNone: "还没有添加。",
  modelsIdentityIntro:
    "即刻写真需要 IP-Adapter plus-face（ip-adapter-plus-face_sd15.safetensors）及其图像编码器（image_encoder 文件夹），都来自 h94/IP-Adapter。",
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
  statusReady: "可以训练",
  mainNavigation: "主导航",
  languageSwitch: "English",
  languageSwitchLabel: "Switch to English（切换到英文）",
  photoNotes: "照片可用，有一条提示",
  photoDetails: "详情：{details}",
  hintRejected: "有 {count} 张照片未被采用（{title}）。{advice}",
  hintRejectedOne: "有 1 张照片未被采用（{title}）。{advice}",
  hintTurnHead:
    "你的照片都是正对镜头的。再加两三张头稍微侧向一边的照片，这样侧面角度的写真也会像你。",
  hintPlenty:
    "{count} 张照片已经超出需要：{plenty} 张多样的照片就足够了，更多只会让训练变慢，不会更像。",
  uploadRefused: "未添加：",
  uploadRefusedFile: "{file}：{reason}",
  refusedNotImage: "不是 PNG、JPEG 或 WebP 照片",
  refusedTooLarge: "文件太大（请拆分或换一张较小的副本）",
  refusedBroken: "文件已损坏或不完整，请重新复制这张照片",
  nextStepTitle: "下一步",
  nextAddPhotos: "在下方添加{name}的照片即可开始。",
  nextTrain: "{name}的可用照片已经够了：来训练分身吧。",
  nextTraining: "正在训练{name}的分身…",
  nextShoot: "{name}的分身已就绪：开始拍摄写真吧。",
  cancelTraining: "取消训练",
  trainCancelled: "训练已取消。",
  validationNoFace: "无法测量相似度：测试写真中没有找到人脸。",
  cancelShoot: "取消剩余的",
  shootCancelled: "已取消：完成了 {done}/{total} 张",
  shootCancelling: "正在取消…",
  likenessNotMeasured: "未测量相似度",
  imageAltNoFace: "{style}风格写真，未找到人脸",
  recipeSteps: "{count} 步",
  recipeSeed: "种子 {seed}",
  coverAlt: "{name}的照片",
  advice_no_face: "没有找到人脸。请使用脸部清晰可见、面向镜头的照片。",
  advice_multiple_faces:
    "照片里不止一个人，无法确定是谁。请使用只有此人的照片，或把照片裁剪到此人的脸部。",
  advice_extra_faces: "背景中较小的人脸已被忽略，使用的是最大的那张脸。",
  advice_face_too_small: "照片中的脸太小。请使用离得更近或分辨率更高、脸部占画面更多的照片。",
  advice_blurred: "脸部模糊或没有对焦。请使用清晰的照片：拍摄时拿稳相机，不要用截图或缩小的副本。",
  advice_extreme_pose: "头部转得或仰俯得太厉害。请使用正对镜头或只稍微侧身的照片。",
  advice_too_dark: "脸部太暗。请使用在日光或明亮室内光线下拍的照片。",
  advice_overexposed: "脸部太亮，被闪光灯或强光照得发白。请使用光线柔和的照片。",
  advice_eyes_closed: "眼睛看起来是闭着的。请使用睁着眼睛的照片。",
  advice_occluded: "嘴部似乎被遮住了（口罩、手或其他物品）。请使用整张脸都露出来的照片。",
  advice_face_near_edge:
    "脸太靠近照片边缘，写真的一部分只能靠补画填充。脸部周围留有更多空间的照片效果更好。",
  advice_low_quality: "图片质量较差（噪点、压缩或模糊）。更清晰的照片训练效果更好。",
  advice_unreadable: "无法把这个文件当作照片读取。请重新以 JPEG 或 PNG 格式上传。",
  advice_duplicate:
    "这张和另一张是同一张照片（或其副本、裁剪或修改版）。每张照片都应该是不同的一次拍摄。",
  advice_different_person: "这张脸和其他照片不一致，看起来是另一个人。请只使用同一个人的照片。",
  detail_multiple_faces: "{faces} 张大小相近的人脸",
  detail_extra_faces: "忽略了 {faces} 张较小的人脸",
  detail_face_too_small: "脸宽 {value} 像素，至少需要 {limit}",
  detail_blurred: "清晰度 {value}，至少需要 {limit}",
  detail_extreme_pose: "偏离正面约 {value}°，最多 {limit}°",
  detail_too_dark: "亮度 {value}/255，至少需要 {limit}",
  detail_overexposed: "亮度 {value}/255，脸部有 {percent}% 纯白",
  detail_eyes_closed: "睁眼程度 {value}，至少需要 {limit}",
  detail_occluded: "嘴部对比度 {value}，至少需要 {limit}",
  detail_face_near_edge: "写真中有 {percent}% 靠镜像补画",
  detail_low_quality: "BRISQUE {value}，高于 {limit}",
  detail_different_person: "与其他照片的典型人脸相距 {value}；同一个人通常低于 {limit}",
  navIdPhoto: "证件照",
  idPhotoTitle: "证件照",
  idPhotoIntro:
    "为{name}制作护照、签证或身份证用的照片：按证件的准确尺寸裁好，并逐条检查是否合规。",
  idPhotoStepDocument: "1 · 证件",
  idPhotoDocument: "用于哪种证件？",
  idPhotoBackground: "背景颜色",
  idPhotoSpecInfo: "打印尺寸 {size}；文件为 {pixels} 像素，{dpi} dpi。",
  idPhotoStepSource: "2 · 照片",
  idPhotoSourceIntro: "选一张合格的照片、上传另一张，或者让工作室拍几张新的。",
  idPhotoFromThis: "用这张照片",
  idPhotoUpload: "上传照片",
  idPhotoShoot: "拍新的证件照",
  idPhotoShootHint: "新照片会正对镜头、纯色背景；每一张都会像普通照片一样逐条检查。",
  idPhotoNoAccepted: "这个人还没有合格的照片：请上传一张，或在其页面添加照片。",
  idPhotoMaking: "正在制作并检查证件照……（几秒钟）",
  idPhotoJobFailed: "无法制作证件照。",
  idPhotoMadePasses: "完成：照片符合全部要求。",
  idPhotoMadeFails: "完成，但照片没有符合全部要求。原因见下方。",
  idPhotoStepResults: "3 · 你的证件照",
  idPhotoNoneYet: "还没有。请在上方选一张照片。",
  idPhotoAlt: "{document}证件照",
  idPhotoPasses: "符合{document}的全部要求。",
  idPhotoFails: "不合格：有 {count} 项要求未达到。",
  idPhotoFailsOne: "不合格：有 1 项要求未达到。",
  idPhotoUnmade: "无法用这张图片制作证件照：图中没有找到一张清楚的人脸。",
  idPhotoNoDownload: "只有符合全部要求的照片才能下载。请换一张照片试试。",
  idPhotoChecks: "逐项检查",
  downloadIdPhoto: "下载证件照",
  downloadIdPhotoJpg: "JPEG 格式",
  downloadSheet: "排版打印（6 寸）",
  downloadSheetPdf: "排版打印 PDF",
  checkPassed: "合格",
  checkFailed: "未达到",
  check_one_face: "只有一个人",
  check_frontal: "正对镜头",
  check_eyes_open: "眼睛睁开",
  check_head_height: "头部大小",
  check_eye_line: "眼睛高度",
  check_head_top: "头顶留白",
  check_centred: "居中",
  check_background_uniform: "背景纯净",
  check_background_colour: "背景颜色",
  check_even_lighting: "脸部光线均匀",
  check_sharpness: "清晰",
  check_size: "照片尺寸",
  check_resolution: "细节足够",
  check_source_framing: "头部完整",
  checkHint_one_face: "请使用只有这个人的照片。",
  checkHint_frontal: "请正视镜头，头部保持水平。",
  checkHint_eyes_open: "请使用双眼睁开的照片。",
  checkHint_head_height: "头部在照片中的大小须符合证件要求。",
  checkHint_eye_line: "眼睛的位置高度须符合证件要求。",
  checkHint_head_top: "头顶上方须按证件要求留白。",
  checkHint_centred: "脸部须位于照片正中。",
  checkHint_background_uniform: "请站在没有阴影的纯色墙前。",
  checkHint_background_colour: "背景须是证件允许的颜色之一。",
  checkHint_even_lighting: "请从正面均匀照亮脸部，不要一侧有阴影。",
  checkHint_sharpness: "请使用更清晰的照片（不要模糊或失焦）。",
  checkHint_size: "照片须是证件要求的尺寸。",
  checkHint_resolution: "这张照片里的脸太小；请使用更近或更大的照片。",
  checkHint_source_framing: "头顶被裁掉了；请使用头部完整的照片。",
  colour_white: "白色",
  colour_off_white: "米白色",
  colour_light_grey: "浅灰色",
  colour_cream: "奶油色",
  colour_light_blue: "浅蓝色",
  colour_blue: "蓝色",
  colour_red: "红色",
  sizeInches: "{width}×{height} 英寸",
  sizeMillimetres: "{width}×{height} 毫米",
};

export type Language = "en" | "zh";
export const languageStorageKey = "doppel.language";

// The language the person chose with the switch (remembered in this browser), else the
// browser's preferred one (zh* -> Chinese, else English).
function preferredLanguage(): Language {
  try {
    const chosen = localStorage.getItem(languageStorageKey);
    if (chosen === "en" || chosen === "zh") return chosen;
  } catch {
    /* storage blocked: follow the browser */
  }
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

// Remembers the choice and draws the page again in that language.
export function switchLanguage(): void {
  try {
    localStorage.setItem(languageStorageKey, language === "zh" ? "en" : "zh");
  } catch {
    /* nothing to remember it in: the page still changes */
  }
  location.reload();
}

// Dates and numbers follow the browser's locale when it is of the UI's language (en-GB writes
// 06/12/2026, en-US 12/6/2026), else the language's usual one.
const browserLocales = navigator.languages?.length ? navigator.languages : [navigator.language];
export const locale: string =
  browserLocales.find((each) => (each || "").toLowerCase().startsWith(language)) ??
  (language === "zh" ? "zh-CN" : "en-GB");

export function formatNumber(value: number, fractionDigits = 0): string {
  return new Intl.NumberFormat(locale, {
    minimumFractionDigits: fractionDigits,
    maximumFractionDigits: fractionDigits,
  }).format(value);
}

export function formatDate(millis: number): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(millis),
  );
}

const ideograph = "\\u3400-\\u9fff\\uf900-\\ufaff";
const latinAfterIdeograph = new RegExp(`([${ideograph}])([A-Za-z0-9])`, "g");
const ideographAfterLatin = new RegExp(`([A-Za-z0-9])([${ideograph}])`, "g");

// Chinese text gets a space between ideographs and Latin letters or digits ("删除 Angelina 及其"),
// whatever a parameter holds.
function spaced(text: string): string {
  return text.replace(latinAfterIdeograph, "$1 $2").replace(ideographAfterLatin, "$1 $2");
}

// t("uploading", {done: 1, total: 3}) -> "Uploading 1 of 3…"; numbers in the locale's digits.
export function t(key: TextKey, parameters: Record<string, string | number> = {}): string {
  const text = table[key].replace(/\{(\w+)\}/g, (whole, name: string) => {
    if (!(name in parameters)) return whole;
    const value = parameters[name];
    return typeof value === "number" ? formatNumber(value, Number.isInteger(value) ? 0 : 2) : value;
  });
  return language === "zh" ? spaced(text) : text;
}

// Whether the table has a text for this key (reason codes from a newer server may not).
export function hasText(key: string): key is TextKey {
  return key in table;
}

// The API's error codes in Chinese (the server's messages are English); English shows the
// server's message, which says what to do.
const chineseErrors: Record<string, string> = {
  unauthorized: "邮箱或密码不正确，或登录已过期。",
  too_many_requests: "尝试次数过多，请稍后再试。",
  not_found: "找不到这项内容，它可能已被删除。",
  too_large: "文件太大或照片太多，请分几次上传。",
  unsupported_media_type: "这不是图片文件。请使用 PNG、JPEG 或 WebP 照片。",
  invalid_file: "文件已损坏或不完整，无法读取。",
  invalid_argument: "请求的内容不正确，请检查后再试。",
  not_ready: "还不能开始：可用的照片不够。",
  csrf: "页面已过期，请刷新后再试。",
  conflict: "这项内容已经存在或正在使用中。",
  no_route: "找不到这个页面或接口。",
  internal: "写真馆内部出错了，请稍后再试。",
};

export function localizedError(code: string): string | null {
  return language === "zh" ? (chineseErrors[code] ?? null) : null;
}

// A photo-check reason code as a short title ("too blurry"); unknown codes fall back to the
// server's message.
export function reasonText(code: string, message: string): string {
  const key = `reason_${code}`;
  return hasText(key) ? t(key) : message;
}

// What is wrong and what to do, in the UI's language (the server's English for unknown codes).
export function reasonAdvice(code: string, message: string): string {
  const key = `advice_${code}`;
  return hasText(key) ? t(key) : message;
}

// The measurement behind a verdict ("sharpness 104, at least 200 needed") in the UI's
// language, from the reason's figures; the server's detail when there is no template.
export function reasonDetail(
  code: string,
  detail: string | undefined,
  figures: Record<string, number> | undefined,
): string {
  const key = `detail_${code}`;
  if (!hasText(key) || !figures || !Object.keys(figures).length) return detail ?? "";
  const shown: Record<string, string> = {};
  for (const [name, value] of Object.entries(figures))
    shown[name] = formatNumber(value, Number.isInteger(value) ? 0 : 2);
  return t(key, shown);
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
    case "no face":
      return t("likenessUnknown");
    default:
      return t("likenessNotMeasured");
  }
}

// A style pack's name or description in the UI language.
export function localized(english: string, chinese: string | undefined): string {
  return language === "zh" && chinese ? chinese : english;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(1, Math.round(seconds));
  const unit = (value: number, unitName: "second" | "minute" | "hour") =>
    new Intl.NumberFormat(locale, {
      style: "unit",
      unit: unitName,
      unitDisplay: language === "zh" ? "long" : "short",
      maximumFractionDigits: 1,
    }).format(value);
  if (s < 60) return unit(s, "second");
  if (s < 3600) return unit(Math.round(s / 60), "minute");
  return unit(s / 3600, "hour");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${formatNumber(value, unit === 0 || value >= 10 ? 0 : 1)} ${units[unit]}`;
}

// Every key of both tables, for the translation check (scripts/check-i18n.mjs reads the file).
export const textTables = { en, zh };
