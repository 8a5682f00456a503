"""Signing in as the browser tests do: through the real login form, landing on the dashboard."""

PASSWORD = "e2e-Trellis-pass-42"


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/dashboard/")
