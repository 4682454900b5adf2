"""Every text a client can read in an error, in the contract's Korean and in English, side by side.

An error carries a Message (a key of the catalogue and its values), which errors.failure renders
in the language the request prefers. No Korean text lives anywhere else in the service, so none
lacks its English (tests/api/test_messages.py). Clients key on `code`, the same in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# name: (Korean, the contract's; English). {placeholders} are the same in both.
CATALOGUE: dict[str, tuple[str, str]] = {
    # The HTTP layer's own errors (Flask's, gunicorn's, nginx's), by status.
    "http_400": ("잘못된 HTTP 요청입니다.", "Bad HTTP request."),
    "http_403": ("접근이 허용되지 않습니다.", "Access is not allowed."),
    "http_404": ("요청한 경로를 찾을 수 없습니다.", "The requested path was not found."),
    "http_405": ("허용되지 않는 HTTP 메서드입니다.", "HTTP method not allowed."),
    "http_408": ("요청을 제때 다 받지 못했습니다.", "The request did not arrive in time."),
    "http_411": ("Content-Length 헤더가 필요합니다.", "A Content-Length header is required."),
    "http_413": ("요청 본문이 너무 큽니다.", "The request body is too large."),
    "http_414": ("요청 URI가 너무 깁니다.", "The request URI is too long."),
    "http_416": ("요청한 범위를 돌려줄 수 없습니다.", "The requested range cannot be returned."),
    "http_417": ("Expect 헤더를 처리할 수 없습니다.", "The Expect header cannot be met."),
    "http_421": ("이 서버가 답할 수 없는 요청입니다.", "This server cannot answer the request."),
    "http_429": (
        "요청이 너무 많습니다. 잠시 후 다시 시도하세요.",
        "Too many requests. Try again shortly.",
    ),
    "http_431": ("요청 헤더가 너무 큽니다.", "The request headers are too large."),
    "http_500": ("서버 내부 오류가 발생했습니다.", "An internal server error occurred."),
    "http_501": ("지원하지 않는 요청 방식입니다.", "This kind of request is not supported."),
    "http_503": (
        "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
        "The service is unavailable for now. Try again shortly.",
    ),
    "http_505": ("지원하지 않는 HTTP 버전입니다.", "HTTP version not supported."),
    # The database and the process.
    "db_unavailable": (
        "데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
        "The database cannot be reached. Try again shortly.",
    ),
    "draining": (
        "종료 중입니다. 새 요청은 다른 인스턴스로 보내세요.",
        "Shutting down: send new requests to another instance.",
    ),
    # The token.
    "token_required": ("인증 토큰이 필요합니다.", "An authentication token is required."),
    "bearer_form": (
        "Authorization 헤더는 'Bearer <토큰>' 형식이어야 합니다.",
        "The Authorization header must be 'Bearer <token>'.",
    ),
    "token_empty": ("토큰이 비어 있습니다.", "The token is empty."),
    "token_malformed": ("토큰 형식이 올바르지 않습니다.", "The token is malformed."),
    "token_audience": (
        "토큰의 대상(aud)이 올바르지 않습니다.",
        "The token's audience (aud) is wrong.",
    ),
    "token_issuer": (
        "토큰의 발급자(iss)가 올바르지 않습니다.",
        "The token's issuer (iss) is wrong.",
    ),
    "token_claim_missing": ("토큰에 필수 클레임이 없습니다.", "The token lacks a required claim."),
    "token_signature": ("토큰 서명이 올바르지 않습니다.", "The token's signature is wrong."),
    "token_algorithm": (
        "허용되지 않는 서명 알고리즘입니다.",
        "The token's signing algorithm is not allowed.",
    ),
    "token_numeric_date": (
        "토큰의 {claim} 클레임은 올바른 시각(NumericDate)이어야 합니다.",
        "The token's {claim} claim must be a time (NumericDate).",
    ),
    "token_expired": ("토큰이 만료되었습니다.", "The token has expired."),
    "token_not_yet": ("토큰이 아직 유효하지 않습니다.", "The token is not valid yet."),
    # The job endpoint.
    "job_not_found_id": (
        "ID가 '{identifier}'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
        "No backup job with ID '{identifier}' was found.",
    ),
    "job_not_found_name": (
        "Name이 '{identifier}'인 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
        "No backup job named '{identifier}' was found.",
    ),
    "job_filtered_id": (
        "ID가 '{identifier}'인 Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 "
        "없습니다.",
        "The backup job with ID '{identifier}' exists, but does not match the given filters.",
    ),
    "job_filtered_name": (
        "Name이 '{identifier}'인 Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 "
        "없습니다.",
        "The backup job named '{identifier}' exists, but does not match the given filters.",
    ),
    # In a 404's details, beside each filter the job exists but does not match.
    "filter_mismatch": ("이 작업과 일치하지 않습니다.", "Does not match this job."),
    "job_without_definition": (
        "작업 데이터가 불완전합니다. backup 정보가 누락되었습니다.",
        "The job's data is incomplete: its backup record (the definition) is missing.",
    ),
    "job_without_runtime": (
        "작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다.",
        "The job's data is incomplete: its backupInfo record (the progress) is missing.",
    ),
    # The server view.
    "server_without_jobs": (
        "서버 '{identifier}'에 등록된 Backup 작업을 찾을 수 없습니다.",
        "No backup job is registered on server '{identifier}'.",
    ),
    "server_no_partition": (
        "서버 '{identifier}'에 파티션 '{partition}'에 해당하는 Backup 작업을 찾을 수 없습니다.",
        "No backup job on server '{identifier}' protects partition '{partition}'.",
    ),
    "server_no_drive": (
        "서버 '{identifier}'에 드라이브 '{drive}'에 해당하는 Backup 작업을 찾을 수 없습니다.",
        "No backup job on server '{identifier}' protects drive '{drive}'.",
    ),
    "server_filtered": (
        "서버 '{identifier}'에 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
        "No backup job on server '{identifier}' matches the given filters.",
    ),
    "server_incomplete_partition": (
        "작업 데이터가 불완전합니다. 파티션 '{partition}' 에 대한 backup 또는 backupInfo 작업 "
        "정보를 찾을 수 없습니다.",
        "The job data is incomplete: a backup or backupInfo record for partition '{partition}' "
        "is missing.",
    ),
    "server_incomplete_drive": (
        "작업 데이터가 불완전합니다. 드라이브 '{drive}' 에 대한 backup 또는 backupInfo 작업 "
        "정보를 찾을 수 없습니다.",
        "The job data is incomplete: a backup or backupInfo record for drive '{drive}' is missing.",
    ),
    # The query string.
    "invalid_parameters": (
        "요청 파라미터가 올바르지 않습니다. {reasons}",
        "Invalid request parameters. {reasons}",
    ),
    "bad_text": (
        "NUL 문자나 잘못된 UTF-8을 포함할 수 없습니다.",
        "Must not contain NUL or invalid UTF-8.",
    ),
    "given_twice": ("한 번만 지정할 수 있습니다.", "May be given only once."),
    "given_as_list": (
        "목록이나 객체가 아닌 값 하나여야 합니다.",
        "Must be one value, not a list or an object.",
    ),
    "after_past_newest": (
        "마지막 로그 줄 번호({newest})보다 클 수 없습니다.",
        "Cannot be past the newest log line ({newest}).",
    ),
    "too_long": ("최대 {length}자까지 지정할 수 있습니다.", "At most {length} characters."),
    "one_of": ("{names} 중 하나여야 합니다.", "Must be one of {names}."),
    "whole_number": (
        "{minimum}부터 {maximum}까지의 정수여야 합니다.",
        "Must be a whole number from {minimum} to {maximum}.",
    ),
    "mount_point": (
        "/ 또는 /var/log 처럼 /로 시작하는 마운트 경로여야 합니다.",
        "Must be a mount point starting with /, such as / or /var/log.",
    ),
    "drive_letter": (
        "C, c, C: 처럼 드라이브 문자 하나여야 합니다.",
        "Must be one drive letter, such as C, c or C:.",
    ),
}
ENGLISH = "en"
KOREAN = "ko"
LANGUAGES = (KOREAN, ENGLISH)  # the first is the default


@dataclass(frozen=True)
class Message:
    """A message of the catalogue by its key, with its values, not yet in any language."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def text(self, language: str = KOREAN) -> str:
        """The message in English when asked, else in the contract's Korean."""
        template = CATALOGUE[self.key][language == ENGLISH]
        # A mapping is a 400's details, its bad parameters: named with their reasons.
        values = {
            name: reasons(value, language) if isinstance(value, Mapping) else value
            for name, value in self.values.items()
        }
        return template.format(**values)


def say(name: str, **values: Any) -> Message:
    """The message of the catalogue by that name, with these values."""
    return Message(name, values)


def reasons(details: Mapping[str, list[Message]], language: str) -> str:
    """Each bad parameter of a 400 and what it accepts, for invalid_parameters."""
    return " ".join(
        f"{name}: {' '.join(why.text(language) for why in whys)}"
        for name, whys in sorted(details.items())
    )
