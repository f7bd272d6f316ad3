"""How to prepare for a visit: the defaults every new clinic starts from."""

PREPARATION = (
    "Wear loose, comfortable clothing that rolls up above the elbows and knees.",
    "Eat a light meal a few hours before; do not come hungry or straight after a big meal.",
    "Avoid caffeine and alcohol on the day of your visit.",
    "Bring a list of your medications and supplements.",
)

FIRST_VISIT = (
    "Your first visit starts with an in-depth consultation about your health and what you "
    "would like help with, before any treatment.",
    "Please arrive ten minutes early.",
)

ABOUT_TREATMENT = (
    "Needles usually stay in for 20 to 30 minutes while you rest.",
    "Most people benefit from a course of several sessions, often weekly at first.",
)
