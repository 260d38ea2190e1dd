load("@shared//lib:strings.bzl", "SEPARATOR", "shout")

def joined(parts: list[str]) -> str:
    return SEPARATOR.join(parts)

def loud(text: str) -> str:
    return shout(text)
