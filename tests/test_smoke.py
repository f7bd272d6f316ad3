from tests.conftest import london


def test_landing_page_shows_the_clinic(client, setup):
    response = client.get("/")
    assert response.status_code == 200
    assert "Test Acupuncture" in response.text


def test_book_through_operation(book, setup):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    assert booking.id
