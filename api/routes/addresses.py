"""The signed-in customer's address book, Glue's /customers/{ref}/addresses (rules in accounts.addresses)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from accounts import addresses
from accounts.addresses import CustomerAddress
from accounts.models import Customer
from api import jsonapi
from api.deps import Sessions
from api.envelope import GlueRequest
from api.jsonapi import GlueError, GlueException
from api.ownership import OwnAccount
from api.schemas import AddressRequest, AddressUpdateRequest

router = APIRouter(tags=["addresses"], dependencies=[GlueRequest])

COLLECTION = "/customers/{customer_reference}/addresses"
ITEM = "/customers/{customer_reference}/addresses/{address_uuid}"
NOT_FOUND = GlueError(404, "404", "Address not found.")
FLAGS = {"is_default_billing", "is_default_shipping"}


def address_attributes(entry: CustomerAddress) -> dict[str, object]:
    address = entry.address
    return {
        "salutation": address.salutation,
        "firstName": address.first_name,
        "lastName": address.last_name,
        "address1": address.address1,
        "address2": address.address2,
        "address3": address.address3,
        "zipCode": address.zip_code,
        "city": address.city,
        "country": address.country,
        "iso2Code": address.iso2_code,
        "company": address.company,
        "phone": address.phone,
        "isDefaultShipping": entry.is_default_shipping,
        "isDefaultBilling": entry.is_default_billing,
    }


def address_resource(request: Request, customer: Customer, entry: CustomerAddress) -> dict[str, object]:
    path = f"/customers/{customer.customer_reference}/addresses/{entry.address.uuid}"
    return jsonapi.resource(request, "addresses", entry.address.uuid, address_attributes(entry), path)


@router.post(COLLECTION, status_code=201, summary="Add an address (the first becomes both defaults)")
async def add_address(body: AddressRequest, request: Request, customer: OwnAccount, sessions: Sessions) -> JSONResponse:
    attributes = body.data.attributes
    async with sessions.begin() as session:
        entry = await addresses.add_address(
            session,
            customer_id=customer.id,
            values=attributes.model_dump(exclude=FLAGS),
            default_billing=attributes.is_default_billing is True,
            default_shipping=attributes.is_default_shipping is True,
            channel="api",
            actor=customer.customer_reference,
        )
    return jsonapi.document(address_resource(request, customer, entry), status=201)


@router.get(COLLECTION, summary="The signed-in customer's addresses, oldest first")
async def list_addresses(request: Request, customer: OwnAccount, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        entries = await addresses.list_addresses(session, customer_id=customer.id)
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "data": [address_resource(request, customer, entry) for entry in entries],
            "links": {"self": f"{base}/customers/{customer.customer_reference}/addresses"},
        },
        media_type=jsonapi.MEDIA_TYPE,
    )


@router.get(ITEM, summary="One of the signed-in customer's addresses")
async def get_address(address_uuid: str, request: Request, customer: OwnAccount, sessions: Sessions) -> JSONResponse:
    async with sessions() as session:
        entry = await addresses.find_address(session, customer_id=customer.id, address_uuid=address_uuid)
    if entry is None:
        raise GlueException(NOT_FOUND)
    return jsonapi.document(address_resource(request, customer, entry))


@router.patch(ITEM, summary="Change an address; isDefaultBilling/isDefaultShipping true moves that default here")
async def update_address(
    address_uuid: str, body: AddressUpdateRequest, request: Request, customer: OwnAccount, sessions: Sessions
) -> JSONResponse:
    attributes = body.data.attributes
    async with sessions.begin() as session:
        entry = await addresses.update_address(
            session,
            customer_id=customer.id,
            address_uuid=address_uuid,
            values=attributes.model_dump(exclude_unset=True, exclude=FLAGS),
            default_billing=attributes.is_default_billing is True,
            default_shipping=attributes.is_default_shipping is True,
            channel="api",
            actor=customer.customer_reference,
        )
    if entry is None:
        raise GlueException(NOT_FOUND)
    return jsonapi.document(address_resource(request, customer, entry))


@router.delete(ITEM, status_code=204, summary="Remove an address; a default it held moves to the newest remaining")
async def remove_address(address_uuid: str, customer: OwnAccount, sessions: Sessions) -> Response:
    async with sessions.begin() as session:
        removed = await addresses.remove_address(
            session,
            customer_id=customer.id,
            address_uuid=address_uuid,
            channel="api",
            actor=customer.customer_reference,
        )
    if not removed:
        raise GlueException(NOT_FOUND)
    return Response(status_code=204)
