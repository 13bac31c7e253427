"""Organ label values of the phantom organ maps (labelsTr_organs/<case>.nii.gz).

0 is air outside the body. Every other tissue of the phantom has its own label, so tests and
analyses can check uptake and HU per organ, and lesion sites can be chosen by tissue.
"""

from __future__ import annotations

ORGAN_LABELS: dict[str, int] = {
    "soft_tissue": 1,      # muscle and other unnamed soft tissue
    "fat": 2,              # subcutaneous fat layer
    "lung": 3,
    "airway": 4,           # trachea and main bronchi
    "skull": 5,            # cranium and mandible
    "spine": 6,            # vertebral bodies, posterior elements, sacrum
    "pelvis_bone": 7,      # iliac wings, pubic and ischial rami
    "femur": 8,            # femoral heads, necks and shafts
    "ribs": 9,
    "brain": 10,
    "salivary_glands": 11,  # parotid and submandibular glands
    "myocardium": 12,      # left-ventricular wall
    "blood_pool": 13,      # heart chambers, aorta and iliac arteries
    "liver": 14,
    "spleen": 15,
    "kidneys": 16,
    "bladder": 17,
    "small_bowel": 18,
}

LABEL_NAMES: dict[int, str] = {v: k for k, v in ORGAN_LABELS.items()}
BONE_LABELS: tuple[int, ...] = tuple(ORGAN_LABELS[k] for k in ("skull", "spine", "pelvis_bone", "femur", "ribs"))
NUM_LABELS = max(ORGAN_LABELS.values()) + 1
