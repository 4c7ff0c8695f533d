"""Another service's public API, called by the pages as the person signed in (their key), so that
service's use cases decide what they may do, exactly as for any other client."""

import httpx

from shared.errors import Unavailable


class ServiceGateway:
    def __init__(self, url: str | None, name: str, setting: str, timeout: float = 10.0):
        self.url = url
        self.name = name  # "the events service": for messages people read
        self.setting = setting  # the setting that says where it is, for the message when it is not set
        self.timeout = timeout

    async def call(self, method: str, path: str, key: str, **request) -> httpx.Response:
        """The answer, whatever its status below 500; Unavailable when the service cannot answer."""
        if self.url is None:
            raise Unavailable(f"this is not set up here ({self.setting} is not set)")
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout) as http:
                answer = await http.request(method, path, headers={"authorization": f"Bearer {key}",
                                                                  **request.pop("headers", {})}, **request)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.name} could not be reached: nothing was changed, try again") from exc
        if answer.status_code >= 500:
            raise Unavailable(f"{self.name} could not do it now: nothing was changed, try again")
        return answer
